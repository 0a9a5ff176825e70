"""Models: the text classifier around an HF encoder, the image-feature MLP, and their Lightning shell."""
