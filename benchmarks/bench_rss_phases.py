"""Where a memlab run's resident memory goes, phase by phase (issue #15: flat memory in n).

    python benchmarks/bench_rss_phases.py --out rss.json -- experiment=sst2_memorization data=sst2_phrases \
        data.source=local data.dir=../shared/data/sst2 model=minilm trainer.max_epochs=1 data.limit_train=6920

Runs ``python -m memlab <overrides>`` in this process with a thread that reads ``/proc/self/status``
every ``--interval`` seconds (VmRSS, RssAnon: the heap, RssFile: mapped file pages such as a
memory-mapped store's touched pages) and attributes each sample to the phase the run is in. Phases are
marked by wrapping memlab's own functions at run time (nothing in memlab changes): data setup, the
prefix-cache build or read, each training epoch, validation, the scoring callback's batch collection,
the curvature fit, the scoring pass, the merge of its chunks, the final table, the output files and
the test loop. Per phase: the RSS on entry, its peak (with RssAnon and RssFile at that peak) and
the RSS on exit; the table goes to stdout and, with ``--out``, to a JSON file (rewritten every 30 s,
so a run killed with SIGTERM leaves its phases so far). ``--score-every k`` scores only every k-th
instance (a large n on a busy CPU: everything else still sees all n).
"""
from __future__ import annotations

import argparse
import atexit
import functools
import json
import resource
import runpy
import signal
import sys
import threading
import time

from memlab.utils.memory import resident_memory

GIB = 1024 ** 3


class PhaseSampler:
    """The current phase (a stack: a phase inside another returns to it when it ends) and, per
    phase, the resident memory on its first entry, at its peak over all its samples (only while it
    is the innermost phase) and on its last exit."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.stack, self.stats, self.order = interval, ["other (before fit end)"], {}, []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sample()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        mem = resident_memory()
        with self.lock:
            name = self.stack[-1]
            if name not in self.stats:
                self.order.append(name)
                self.stats[name] = {"entry_rss": mem["rss"], "peak_rss": 0, "entries": 0}
            s = self.stats[name]
            if mem["rss"] >= s["peak_rss"]:
                s.update(peak_rss=mem["rss"], anon_at_peak=mem["anon"], file_at_peak=mem["file"])
            s["exit_rss"] = mem["rss"]

    def enter(self, name: str) -> None:
        self.sample()  # the phase before ends here
        with self.lock:
            self.stack.append(name)
        self.sample()
        self.stats[name]["entries"] += 1

    def leave(self) -> None:
        self.sample()
        with self.lock:
            if len(self.stack) > 1:
                self.stack.pop()
        self.sample()

    def switch(self, name: str) -> None:
        """Replace the innermost phase (for phases that end where the next begins)."""
        self.sample()
        with self.lock:
            self.stack[-1] = name
        self.sample()
        self.stats[name]["entries"] += 1

    def report(self, final: bool = True) -> dict:
        self.sample()
        if final:
            self.stop.set()
        with self.lock:
            phases = [{"phase": n, **self.stats[n]} for n in self.order]
        return {"phases": phases, "peak_rss": max(p["peak_rss"] for p in phases),
                "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def marked(sampler: PhaseSampler, name: str, fn, when=None, lazy: bool = False):
    """``fn`` run inside phase ``name``; ``lazy``: ``fn`` returns an iterator, and the phase is
    the iteration over it. ``when(*args, **kwargs)``: mark only the calls that do the phase's work
    (a repeated setup returns at once)."""
    def iterate(items):
        sampler.enter(name)
        try:
            yield from items
        finally:
            sampler.leave()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if lazy:
            return iterate(fn(*args, **kwargs))
        if when is not None and not when(*args, **kwargs):
            return fn(*args, **kwargs)
        sampler.enter(name)
        try:
            return fn(*args, **kwargs)
        finally:
            sampler.leave()
    return wrapper


def install_markers(sampler: PhaseSampler) -> None:
    import pytorch_lightning as L

    import memlab.callbacks.prefix_cache as prefix_cb
    import memlab.callbacks.scoring as scoring_cb
    import memlab.data.base as base
    import memlab.pipeline.scoring as scoring
    from memlab.callbacks.timing import EpochTimer

    base.MemlabDataModule.setup = marked(sampler, "data setup", base.MemlabDataModule.setup,
                                         when=lambda dm, *a, **k: dm.splits is None)
    prefix_cb.apply_prefix_cache = marked(sampler, "prefix cache (build or read)", prefix_cb.apply_prefix_cache,
                                          when=lambda dm, *a, **k: not getattr(dm, "prefix_cached", False))
    scoring_cb.ScoringCallback._score_once = marked(sampler, "scoring: loader, fit batches",
                                                    scoring_cb.ScoringCallback._score_once)
    scoring_cb.score_training_set = marked(sampler, "scoring: chunk digests, saves", scoring_cb.score_training_set)
    scoring.fit_scoring_solver = marked(sampler, "curvature fit", scoring.fit_scoring_solver)
    scoring.memorization_scores = marked(sampler, "scoring pass", scoring.memorization_scores, lazy=True)
    scoring.merge_chunks = marked(sampler, "merge chunks", scoring.merge_chunks)
    scoring_cb.finalize_scores = marked(sampler, "final table", scoring_cb.finalize_scores)
    scoring_cb.score_diagnostics = marked(sampler, "diagnostics", scoring_cb.score_diagnostics)
    scoring_cb.ScoringCallback.write_outputs = marked(sampler, "write outputs", scoring_cb.ScoringCallback.write_outputs)
    L.Trainer.test = marked(sampler, "test", L.Trainer.test)
    EpochTimer.on_train_epoch_start = lambda self, *a, _f=EpochTimer.on_train_epoch_start: (
        sampler.enter("train epoch"), _f(self, *a))[-1]
    EpochTimer.on_train_epoch_end = lambda self, *a, _f=EpochTimer.on_train_epoch_end: (_f(self, *a), sampler.leave())[0]
    EpochTimer.on_validation_start = lambda self, *a: sampler.enter("validation")
    EpochTimer.on_validation_end = lambda self, *a: sampler.leave()
    EpochTimer.on_fit_end = lambda self, *a: sampler.switch("after fit (scoring done)")


def thin_scoring(every: int) -> None:
    """Score every ``every``-th instance of the (length-ordered) score loader only, so that a large n
    is affordable on a busy CPU: the data, the training split and the curvature fit's batches stay
    those of all n instances; only the scoring pass and its outputs shrink (the outputs of all n can
    be measured apart)."""
    from torch.utils.data import DataLoader

    import memlab.callbacks.scoring as scoring_cb
    from memlab.data.base import ListDataset

    real = scoring_cb.score_training_set

    @functools.wraps(real)
    def thinned(module, params, objective, score_batches, fit_batches, solver_cfg, out_dir, sample_indices, *args,
                **kwargs):
        ds, keep = score_batches.dataset, range(0, len(score_batches.dataset), every)
        ds = ds.subset(keep) if hasattr(ds, "subset") else ListDataset([ds.examples[i] for i in keep])
        loader = DataLoader(ds, batch_size=score_batches.batch_size, shuffle=False, collate_fn=score_batches.collate_fn)
        return real(module, params, objective, loader, fit_batches, solver_cfg, out_dir,
                    [sample_indices[i] for i in keep], *args, **kwargs)

    scoring_cb.score_training_set = thinned


def print_table(report: dict) -> None:
    print(f"{'phase':32s} {'entry':>7s} {'peak':>7s} {'anon@pk':>8s} {'file@pk':>8s} {'exit':>7s}  (GiB)")
    for p in report["phases"]:
        print(f"{p['phase']:32s} {p['entry_rss'] / GIB:7.3f} {p['peak_rss'] / GIB:7.3f} "
              f"{p['anon_at_peak'] / GIB:8.3f} {p['file_at_peak'] / GIB:8.3f} {p['exit_rss'] / GIB:7.3f}")
    print(f"peak RSS {report['peak_rss'] / GIB:.3f} GiB (ru_maxrss {report['ru_maxrss'] / GIB:.3f} GiB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON file for the per-phase figures")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--score-every", type=int, default=1,
                        help="score only every k-th instance (see thin_scoring); 1: all")
    parser.add_argument("overrides", nargs="*", help="memlab's Hydra overrides (after --)")
    args = parser.parse_args()
    sampler = PhaseSampler(args.interval)
    if args.score_every > 1:
        thin_scoring(args.score_every)  # before the markers: the marked score_training_set wraps it
    install_markers(sampler)

    def save(final: bool = False) -> dict:
        report = sampler.report(final)
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"overrides": args.overrides, "score_every": args.score_every, "finished": final,
                           "time": time.strftime("%Y-%m-%d %H:%M:%S"), **report}, f, indent=1)
        return report

    def save_every(seconds: float = 30.0) -> None:  # a killed run still leaves its phases so far
        while not sampler.stop.wait(seconds):
            save()

    threading.Thread(target=save_every, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a normal exit: the table is written
    atexit.register(lambda: print_table(save(final=True)))
    sys.argv = ["memlab", *args.overrides]
    runpy.run_module("memlab", run_name="__main__", alter_sys=True)  # as ``python -m memlab`` (Hydra finds its conf/)


if __name__ == "__main__":
    main()
