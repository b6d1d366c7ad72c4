"""``summary.md``: the benchmark results as the README's Performance section quotes them,
made from the JSON files alone (nothing typed in by hand) and, for the cores a GPU needs,
today's hardware profiles (``cores_per_gpu``)."""

from __future__ import annotations

import json
from pathlib import Path

from lars_hvd.planning import profiles

TRAINING_MODEL = {"resnet-train-224": "resnet50", "alexnet-train-227": "alexnet_bn"}


def _load(out: Path, name: str) -> dict | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _ratio(r: dict) -> str:
    return f"{r['ratio']:.3f} (95% CI +-{r['ci95']:.3f}, {len(r['rounds'])} rounds)"


def render(out: Path) -> str:
    """summary.md from the results in ``out`` (a benchmark not run there is left out)."""
    lines = ["| benchmark | result | target | command |", "|---|---|---|---|"]
    machine = None
    for name, rows in ROWS:
        result = _load(out, name)
        if result:
            lines += rows(result)
            machine = machine or result["machine"]
    if machine:
        lines += ["", f"Machine: {machine['cpus']} CPUs ({machine['processor']}), Python "
                      f"{machine['python']}."]
    return "\n".join(lines) + "\n"


def _throughput_rows(t: dict) -> list[str]:
    return [f"| throughput, `{t['model']}`, batch {t['batch_per_worker']}/worker, "
            f"{t['workers']} worker(s) | {t['per_worker'][0]:,.0f} +-{t['per_worker'][1]:,.0f}"
            f" img/s per worker, {t['total'][0]:,.0f} total | - | `{t['command']}` |"]


def _overhead_rows(o: dict) -> list[str]:
    return [f"| `lars_hvd.train` / bare `model.fit` (SGD), `{o['model']}`, batch "
            f"{o['batch_per_worker']} | {_ratio(o)} | >= 0.98 | `{o['command']}` |"]


def _overhead_workers_rows(o2: dict) -> list[str]:
    m, c = o2["median"], o2["cpu_ratio"]
    return [f"| `lars_hvd.train` / bare `model.fit` (SGD), `{o2['model']}`, batch "
            f"{o2['batch_per_worker']}/worker, `horovodrun -np {o2['workers']}` | images/s "
            f"median {m['median']:.3f} [{m['low']:.3f}, {m['high']:.3f}], CPU s per step "
            f"median {c['median']:.3f} [{c['low']:.3f}, {c['high']:.3f}] ({len(m['rounds'])} "
            f"rounds, {100 * m['coverage']:.0f}% intervals) | >= 0.98, <= 1.02 | "
            f"`{o2['command']}` |"]


def _optimizer_rows(p: dict) -> list[str]:
    lines = []
    for part, what, target in (("apply", "apply_gradients", {"lars/sgd": "<= 1.4"}),
                               ("step", f"full step (batch {p['batch']}, "
                                        f"{p['input_shape'][0]}px)", {"lars/sgd": "<= 1.03"})):
        for mode, summary in p[part].items():
            for key, r in summary["ratios"].items():
                sgd_ms = 1e3 * summary["seconds_per_call"]["sgd"][0]
                lines.append(
                    f"| {p['model']} {what}, {key}, "
                    f"{'XLA' if mode == 'xla' else 'no XLA'} | {_ratio(r)}; SGD "
                    f"{sgd_ms:.0f} ms | {target.get(key, '-')} | `{p['command']}` |")
    return lines


def _allreduce_rows(a: dict) -> list[str]:
    lines = []
    for key, job in a["jobs"].items():
        r = job["gradient"]
        text = f"{r['model']} gradient {1e3 * r['fp32_seconds']:.0f} ms fp32"
        if "sizes" in job:
            peak = max(job["sizes"], key=lambda s: s["bus_gbytes_per_second"])
            text = (f"peak bus {peak['bus_gbytes_per_second']:.2f} GB/s at "
                    f"{peak['bytes'] >> 20} MB (memcpy {job['memcpy_gbytes_per_second']:.1f}"
                    f" GB/s); {text}, {1e3 * r['fp16_seconds']:.0f} ms fp16-compressed")
        lines.append(f"| allreduce -np 2, {key} | {text} | - | `{a['command']}` |")
    return lines


def _scaling_rows(s: dict) -> list[str]:
    lines = []
    for name, prof in s["profiles"].items():
        for kind, text in (("nccl", "NCCL's ring or tree"), ("hierarchical", "hierarchical")):
            eff = ", ".join(f"{p['gpus']}: {100 * p['efficiency']:.0f}%" for p in prof[kind])
            lines.append(f"| projected ResNet-50 scaling, batch {s['global_batch']:,}, "
                         f"{name} ({text}) | {eff} | - | `{s['command']}` |")
    return lines


def _input_rows(i: dict) -> list[str]:
    """The input bench's rows: each recipe's paths, the JPEG decode alone, the cores a GPU
    needs."""
    lines = _input_path_rows(i)
    floor = i.get("alexnet_decode_only")
    if floor:
        lines.append(f"| ImageNet input, alexnet-train-227's JPEG decode alone (its window,"
                     f" originals), images/s a core | {floor['per_core']:,.0f} | - | "
                     f"`{i['command']}` |")
    per_core = {recipe: {path: row["per_core"] for path, row in rows.items()}
                for recipe, rows in i["recipes"].items()}
    for name, recipes in cores_per_gpu(per_core).items():
        for recipe, need in recipes.items():
            text = ", ".join(f"{path} {n:.1f}" for path, n in need["needed"].items())
            lines.append(f"| cores a GPU needs, {name} ({need['gpu_images_per_second']:,.0f}"
                         f" img/s a GPU, {need['cores_per_gpu']:g} a GPU), {recipe} | {text}"
                         f" | - | `{i['command']}` |")
    return lines


def _bn_group_rows(b: dict) -> list[str]:
    m, c = b["median"], b["cpu_ratio"]
    chain = ", ".join(f"{r['added_ms']:.2f} ms with {r['stretch_ms']:g} ms between"
                      for r in b["chain"])
    return [f"| `--bn-group {b['workers']}` / `--bn-group 1`, `{b['model']}` at "
            f"{b['image_size']} px, batch {b['batch_per_worker']}/worker, `horovodrun -np "
            f"{b['workers']}` | images/s median {m['median']:.3f} [{m['low']:.3f}, "
            f"{m['high']:.3f}], CPU s per step median {c['median']:.3f} ({len(m['rounds'])} "
            f"rounds); each of the {b['chain'][0]['collectives']} batch-norm allreduces adds "
            f"{chain} | - | `{b['command']}` |"]


def write(out: Path) -> Path:
    from lars_hvd.files import atomic_write_text

    path = out / "summary.md"
    atomic_write_text(path, render(out))
    print(render(out))
    return path


def cores_per_gpu(per_core: dict[str, dict]) -> dict[str, dict]:
    """profile -> recipe -> path -> CPU cores a GPU needs to be fed at its published rate
    (today's profiles: ``lars_hvd.planning.profiles``), from measured images/s a core
    (``per_core``: recipe -> path -> rate)."""
    out = {}
    for name, hw in profiles.HARDWARE.items():
        for recipe, model in TRAINING_MODEL.items():
            if model not in hw.compute or recipe not in per_core:
                continue
            gpu = hw.compute[model].images_per_second()
            out.setdefault(name, {})[recipe] = {
                "gpu_images_per_second": gpu, "cores_per_gpu": hw.cores_per_gpu,
                "needed": {path: gpu / rate for path, rate in per_core[recipe].items()}}
    return out


def _input_path_rows(i: dict) -> list[str]:
    """The input bench's path rows: images/s a core, and the ratio to the baseline path
    (``now``; ``before``, the reader of then, in results made before its uint8 pixels)."""
    base, lines = i.get("baseline", "before"), []
    for recipe, r in i["recipes"].items():
        text = "; ".join(f"{path} {row['per_core']:,.0f} ({row['ratio_to_' + base]:.2f}x"
                         f"{'' if row['steady'] else ', NOT steady'})"
                         for path, row in r.items())
        if recipe.startswith("eval"):
            target = "now >= 1.00x before" if base == "before" else "-"
        else:
            target = ">= 600 a core (pre-sized shards)"
        lines.append(f"| ImageNet input, {recipe}, batch {i['batch']}, images/s a core "
                     f"({i['cores']} cores) in the steady state (windows of "
                     f"{i['window_batches']} batches), x {base} | {text} | {target} | "
                     f"`{i['command']}` |")
    return lines


# Each result file (``NAME.json``) and its rows, in the table's order.
ROWS = (("throughput", _throughput_rows), ("overhead", _overhead_rows),
        ("overhead-2w", _overhead_workers_rows), ("optimizer", _optimizer_rows),
        ("allreduce", _allreduce_rows), ("scaling", _scaling_rows), ("input", _input_rows),
        ("bn-group-2w", _bn_group_rows))
