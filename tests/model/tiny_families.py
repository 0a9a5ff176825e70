"""Tiny random base models of every supported family (hidden 32, eager attention), built from their
transformers configs: no download. Shared by the architecture tests."""
from __future__ import annotations

import torch

VOCAB = 60
COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=64, attn_implementation="eager")


def config(kind: str, layers: int = 3):
    import transformers as t

    common = {**COMMON, "num_hidden_layers": layers}
    if kind == "bert":
        return t.BertConfig(**common)
    if kind == "distilbert":
        return t.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=layers, n_heads=4, hidden_dim=64,
                                  attn_implementation="eager")
    if kind == "roberta":
        return t.RobertaConfig(**common, pad_token_id=1)
    if kind == "electra":
        return t.ElectraConfig(**common, embedding_size=16)  # with the projection to the hidden size
    if kind == "deberta-v2":
        return t.DebertaV2Config(**common, relative_attention=True, position_buckets=8, max_relative_positions=16,
                                 pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", position_biased_input=False,
                                 type_vocab_size=0)
    if kind == "gpt2":
        return t.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=layers, n_head=4, n_positions=64,
                            attn_implementation="eager", bos_token_id=2, eos_token_id=2)
    llama_like = dict(common, num_key_value_heads=2, eos_token_id=2, bos_token_id=3)
    if kind == "llama":
        return t.LlamaConfig(**llama_like)
    if kind == "mistral":
        return t.MistralConfig(**llama_like, sliding_window=None)
    if kind == "qwen2":
        return t.Qwen2Config(**llama_like)
    raise ValueError(kind)


FAMILIES = ["bert", "distilbert", "roberta", "electra", "deberta-v2", "gpt2", "llama", "mistral", "qwen2"]


def base_model(kind: str, layers: int = 3, seed: int = 0):
    from transformers import AutoModel

    torch.manual_seed(seed)
    return AutoModel.from_config(config(kind, layers), attn_implementation="eager")
