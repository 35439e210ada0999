#!/usr/bin/python3
"""Writes the results-file fixtures of the report, compare and plot tests, and checks them against the schema.

The figures are INVENTED, chosen so that each seed claim in configs/claims.yaml has a known verdict on
seed_matrix.json (test_claims_catalog.cpp lists them) and so that compare_a/compare_b exercise every compare path.
They are not measurements: the provenance says so ("fixture" host, "fixture GPU" name).

    /usr/bin/python3 tests/data/results/make_fixtures.py     # rewrites the three files beside this script
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
SCHEMA = HERE.parents[2] / "results" / "schema" / "qbench-results.schema.json"
GIB = 1024 ** 3

GENERATION = {
    "prompt": "Describe this image", "prompt_tokens": 55, "image_tokens": "auto", "max_new_tokens": 32,
    "mode": "greedy", "temperature": 1.0, "top_k": 0, "top_p": 1.0, "warmup": 1, "repetitions": 3,
}
GPTQ = {
    "group_size": 128, "desc_act": False, "static_groups": False, "sym": True, "damp_percent": 0.01,
    "calibration_samples": 128, "calibration_seq_len": 2048, "memory_plan": "streaming", "recons_threshold": 8,
}
BNB = {
    "quant_type": "nf4", "double_quant": False, "blocksize": 64, "compute_dtype": "float16",
    "int8_threshold": 6.0, "small_batch_path": "dequantize",
}


def provenance(gpu_name, hostname, timestamp, matrix_file):
    return {
        "schema_version": "1.0.0", "qbench_version": "0.1.0", "git_commit": "unknown", "git_dirty": None,
        "build": {"type": "Release", "compiler": "GCC 12.2.0", "cuda_compiler": "13.0.48", "sanitized": False},
        "host": {"hostname": hostname, "cpu_model": "fixture CPU", "cores": 16, "ram_bytes": 128 * GIB},
        "os": {"name": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0", "machine": "x86_64"},
        "timestamp": timestamp, "command_line": ["qbench", "run", matrix_file],
        "matrix": {"file": matrix_file, "yaml": None},
        "gpu": {"name": gpu_name, "compute_capability": "9.0", "memory_bytes": 80 * GIB},
    }


def fnv1a(text):
    h = 0xcbf29ce484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def cell(model, framework, bits, beam, instance, quant_type="nf4", repetitions=3, memory_plan="streaming"):
    c = {"model": model, "framework": framework, "bits": bits, "beam": beam, "instance": instance, "seed": 0,
         "generation": dict(GENERATION, repetitions=repetitions)}
    if framework == "gptq":
        c["gptq"] = dict(GPTQ, memory_plan=memory_plan)
    if framework == "bnb":
        c["bnb"] = dict(BNB, quant_type=quant_type)
    return c


def summary(median, spread_pct=1.0, count=3):
    # Samples symmetric around the median; p10/p90 by linear interpolation as qbench computes them.
    step = median * spread_pct / 100
    samples = [median - step, median, median + step][:count] if count <= 3 else \
        [median + step * (i - (count - 1) / 2) / ((count - 1) / 2) for i in range(count)]
    samples = sorted(samples)
    n = len(samples)

    def pct(p):
        pos = (n - 1) * p / 100
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        return samples[lo] + (samples[hi] - samples[lo]) * (pos - lo)

    mean = sum(samples) / n
    var = sum((s - mean) ** 2 for s in samples) / (n - 1) if n > 1 else 0.0
    return {"median": pct(50), "p10": pct(10), "p90": pct(90), "mean": mean, "stddev": var ** 0.5,
            "min": samples[0], "max": samples[-1], "count": n, "samples": samples}


def record(c, outcome="ok", reason="", metrics=None, index=0):
    return {"cell": c, "config_hash": fnv1a(json.dumps(c, sort_keys=True, separators=(",", ":"))),
            "outcome": outcome, "reason": reason,
            "started_at": "2025-01-15T10:%02d:00.000Z" % (index % 60),
            "finished_at": "2025-01-15T10:%02d:30.000Z" % (index % 60),
            "wall_s": 30.0, "device": "cuda", "metrics": metrics or {}}


def ok_metrics(tokens_per_s, vram_gib, load_s, bw, top1, kl, beam=1, spread_pct=1.0, count=3):
    return {
        "load_time_s": load_s,
        "vram_peak_bytes": int(vram_gib * GIB),
        "host_peak_rss_bytes": int(3.5 * GIB),
        "prefill_ms": summary(120.0 * beam, 2.0, count),
        "decode_tokens_per_s": summary(tokens_per_s, spread_pct, count),
        "e2e_tokens_per_s": summary(tokens_per_s * 0.9, spread_pct, count),
        "bandwidth_utilization": bw,
        "quality": {"top1_agreement": top1, "mean_kl": kl, "compared_positions": 32, "reference_framework": "fp16"},
    }


def oom_metrics(budget_gib, requested_gib, available_gib, load_s=None):
    m = {"oom": {"requested_bytes": int(requested_gib * GIB), "available_bytes": int(available_gib * GIB),
                 "budget_bytes": int(budget_gib * GIB), "kind": "vram"}}
    if load_s is not None:
        m["load_read_s"] = load_s
    return m


# The seed study in small: (model, instance) x beam x framework/bits. Figures per (model, instance, config):
# tokens/s at beam 1, VRAM GiB, load s, bandwidth utilization, top-1 agreement, mean KL; None = out of VRAM.
BUDGET = {"g4dn.2xlarge": 15.0, "g5.2xlarge": 22.49}
CONFIGS = [  # (framework, bits, quant_type)
    ("fp16", 16, None), ("gptq", 2, None), ("gptq", 3, None), ("gptq", 4, None), ("gptq", 8, None),
    ("bnb", 2, None), ("bnb", 3, None), ("bnb", 4, "nf4"), ("bnb", 4, "fp4"), ("bnb", 8, None),
]
QUALITY = {("fp16", 16): (1.0, 0.0), ("gptq", 2): (0.35, 1.8), ("gptq", 3): (0.80, 0.15), ("gptq", 4): (0.95, 0.02),
           ("gptq", 8): (0.99, 0.001), ("bnb", 4): (0.94, 0.025), ("bnb", 8): (0.99, 0.002)}
#                                 fp16   gptq2  gptq3  gptq4  gptq8  nf4    fp4    int8
SPEED = {("vicuna-7b-v0", "g4dn.2xlarge"): [None, 19.0, 20.0, 25.0, 12.0, 12.0, 11.7, 4.0],
         ("vicuna-7b-v0", "g5.2xlarge"): [30.0, 31.0, 33.0, 40.0, 20.0, 20.0, 19.5, 6.0],
         ("vicuna-13b-v0", "g4dn.2xlarge"): [None, 10.0, 11.0, 14.0, None, 7.0, 6.9, None],
         ("vicuna-13b-v0", "g5.2xlarge"): [None, 18.0, 19.0, 24.0, 11.0, 12.0, 11.8, 3.5]}
VRAM = {"vicuna-7b-v0": [14.2, 3.2, 3.8, 4.5, 7.9, 4.6, 4.6, 7.8], "vicuna-13b-v0": [26.3, 5.6, 6.8, 8.1, 15.2, 8.3, 8.3, 15.5]}
# Load times: bnb loads quantize on the GPU; the int8 load of the 7B model is the one slower than FP16.
LOAD = {"vicuna-7b-v0": [45.0, 20.0, 21.0, 22.0, 30.0, 38.0, 38.5, 47.0],
        "vicuna-13b-v0": [80.0, 35.0, 37.0, 40.0, 55.0, 70.0, 70.5, 75.0]}
BW = [0.80, 0.55, 0.60, 0.70, 0.65, 0.45, 0.44, 0.15]


def seed_matrix():
    records = []
    for (model, instance), speeds in SPEED.items():
        for beam in (1, 2):
            k = 0
            for framework, bits, quant_type in CONFIGS:
                c = cell(model, framework, bits, beam, instance, quant_type or "nf4")
                if framework == "bnb" and bits in (2, 3):
                    records.append(record(c, "unsupported", "bitsandbytes quantizes to 4 or 8 bits only",
                                          index=len(records)))
                    continue
                tps, vram, load = speeds[k], VRAM[model][k], LOAD[model][k]
                if tps is None:
                    records.append(record(c, "oom_vram", "VRAM budget of %s exceeded while loading" % instance,
                                          oom_metrics(BUDGET[instance], 0.5, 0.2, load_s=load * 0.6),
                                          index=len(records)))
                else:
                    top1, kl = QUALITY[(framework, bits)]
                    # Beam search reads the weights once per step for all beams: per returned token a bit slower.
                    records.append(record(c, "ok", "", ok_metrics(tps * (1.0 if beam == 1 else 0.9), vram + 0.1 * beam,
                                                                   load, BW[k], top1, kl, beam), index=len(records)))
                k += 1
    doc = provenance("fixture GPU (invented numbers)", "fixture", "2025-01-15T10:00:00.000Z", "configs/minigpt4.yaml")
    doc["cells"] = records
    return doc


def compare_pair():
    # A on one machine, B on another: same matrix, records in a different order, B with more repetitions.
    a = provenance("fixture GPU A (invented numbers)", "fixture-a", "2025-01-15T10:00:00.000Z", "configs/smoke.yaml")
    b = provenance("fixture GPU B (invented numbers)", "fixture-b", "2025-02-01T08:00:00.000Z", "configs/smoke.yaml")
    a["cells"] = [
        record(cell("tiny", "fp16", 16, 1, "local"), metrics=ok_metrics(50.0, 0.5, 1.0, 0.5, 1.0, 0.0)),
        record(cell("tiny", "gptq", 4, 1, "local"), metrics=ok_metrics(100.0, 0.2, 0.8, 0.6, 0.95, 0.02)),
        record(cell("tiny", "bnb", 4, 1, "local"), metrics=ok_metrics(60.0, 0.2, 0.9, 0.4, 0.94, 0.03)),
        record(cell("tiny", "gptq", 8, 1, "local"), metrics=ok_metrics(70.0, 0.3, 0.8, 0.5, 0.99, 0.001)),
    ]
    b["cells"] = [
        record(cell("tiny", "bnb", 4, 1, "local", repetitions=5), "oom_vram", "VRAM exhausted while loading",
               oom_metrics(0.25, 0.1, 0.05)),
        # 20 % slower decode, far beyond a 1 % spread: worse.
        record(cell("tiny", "gptq", 4, 1, "local", repetitions=5),
               metrics=ok_metrics(80.0, 0.2, 0.8, 0.48, 0.95, 0.02, count=5)),
        # 0.8 % faster, inside the spread: same.
        record(cell("tiny", "fp16", 16, 1, "local", repetitions=5),
               metrics=ok_metrics(50.4, 0.5, 1.0, 0.5, 1.0, 0.0, count=5)),
        record(cell("tiny", "gptq", 3, 1, "local", repetitions=5),
               metrics=ok_metrics(90.0, 0.2, 0.8, 0.55, 0.8, 0.15, count=5)),
    ]
    return a, b


def check(doc, name):
    try:
        import jsonschema
    except ImportError:
        print("jsonschema not available: %s not checked against the schema" % name, file=sys.stderr)
        return
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(doc, schema)


def main():
    a, b = compare_pair()
    for name, doc in (("seed_matrix.json", seed_matrix()), ("compare_a.json", a), ("compare_b.json", b)):
        check(doc, name)
        (HERE / name).write_text(json.dumps(doc, indent=1) + "\n")
        print("wrote", HERE / name, len(doc["cells"]), "cells")


if __name__ == "__main__":
    main()
