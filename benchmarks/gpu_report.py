"""The targets and the Markdown report of ``benchmarks/gpu_bench.py`` (from its JSON report alone)."""

from __future__ import annotations

from typing import Any

from benchmarks import common

SMALL_TARGET_MS = 1.5  # PEFNet-small 352x352 FP16 batch 1 through open_engine on the H200
DEFAULT_TARGET_MS = 0.5  # the bundled default model, FP16 batch 1
FILE_TARGET_FPS = 300.0  # 1080p file mode end to end
COMPILE_MIN_AGREEMENT = 0.999


def _ok_rows(report: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    rows = [r for r in report["rows"] if r.get("status") == "ok"]
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _best_line(label: str, rows: list[dict[str, Any]], target_ms: float) -> str:
    if not rows:
        return f"{label} <= {target_ms} ms: not measured"
    best = min(rows, key=lambda r: r["ms_per_frame"])
    return (f"{label}: {best['ms_per_frame']:.3f} ms ({best['mode']}, p95 {best['p95_ms']:.3f} ms) target <= "
            f"{target_ms} ms {common.pass_fail(best['ms_per_frame'] <= target_ms)}")


def target_lines(report: dict[str, Any]) -> list[str]:
    """One line per target of issue 16, PASS/FAIL or 'not measured'."""
    lines = [_best_line("PEFNet-small 352x352 FP16 batch 1", _ok_rows(report, variant="small", size="352x352",
                                                                      precision="fp16", batch=1), SMALL_TARGET_MS)]
    default = [r for r in _ok_rows(report, precision="fp16", batch=1) if str(r.get("model", "")).startswith("default")]
    lines.append(_best_line("default model FP16 batch 1", default, DEFAULT_TARGET_MS))
    compiled = [r for r in _ok_rows(report) if r["mode"].startswith("compile")]
    if compiled:
        worst = min(r["parity"]["cpu_preprocess"]["agreement"] for r in compiled)
        lines.append(f"compiled masks vs eager FP32 on real frames: worst agreement {worst * 100:.3f} % over "
                     f"{len(compiled)} rows, target >= {COMPILE_MIN_AGREEMENT * 100:.1f} % "
                     f"{common.pass_fail(worst >= COMPILE_MIN_AGREEMENT)}")
    else:
        lines.append("compiled masks vs eager FP32: not measured")
    for item in report["pipeline"]:
        fps = item["pipeline_fps"]
        lines.append(f"{item['size']} file mode: {fps:.1f} frames/s, bound by {item['bounding_stage']} "
                     f"({item['bounding_stage_fps']:.1f} frames/s alone), target >= {FILE_TARGET_FPS:.0f} "
                     f"{common.pass_fail(fps >= FILE_TARGET_FPS)}")
    for item in report["live"]:
        lines.append(f"live {item['camera']}: mask age p95 {item['mask_age_p95_ms']} ms (target <= inference p95 + 2 "
                     f"periods = {item['mask_age_target_ms']} ms) {common.pass_fail(item['pass_mask_age'])}; "
                     f"drops at the inference queues {item['inference_drops']} "
                     f"{common.pass_fail(item['pass_no_inference_drops'])}")
    for item in report["preprocess"]:
        lines.append(f"GPU vs CPU preprocessing on {item['frames']} real frames: max {item['max_abs_grey']} grey "
                     f"levels, masks agree {item['mask_agreement_mean'] * 100:.3f} % (min "
                     f"{item['mask_agreement_min'] * 100:.3f} %)")
    return lines


HEADERS = ("model", "mode", "precision", "batch", "status", "median ms", "p95 ms", "ms/frame", "frames/s",
           "GFLOP/frame", "TFLOP/s", "% of peak", "compile s", "masks vs FP32 %", "via prepare %", "note")


def _pct(row: dict[str, Any], key: str) -> float | None:
    value = row.get("parity", {}).get(key, {}).get("agreement")
    return None if value is None else round(100.0 * value, 3)


def latency_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        ok = r.get("status") == "ok"
        peak = r.get("peak_fraction")
        out.append([f"{r['variant']} {r['size']}", r["mode"], r["precision"], r["batch"], r["status"],
                    r.get("median_ms") if ok else None, r.get("p95_ms") if ok else None,
                    r.get("ms_per_frame") if ok else None, r.get("fps") if ok else None, r.get("gflop_per_frame"),
                    r.get("tflops"), None if peak is None else round(100.0 * peak, 3), r.get("compile_s"),
                    _pct(r, "cpu_preprocess"), _pct(r, "engine_prepare"),
                    r.get("timer", "") if ok else r.get("reason", "")])
    return common.markdown_table(HEADERS, out)


def _pipeline_lines(item: dict[str, Any]) -> list[str]:
    stage_rows = [[name, s.get("fps"), s.get("p50_ms"), s.get("p95_ms"),
                   "no (decoded before)" if s.get("in_pipeline") is False else "yes"]
                  for name, s in item["stages_alone"].items() if s.get("status") == "ok"]
    inside = ", ".join(f"{k} {v['p50_ms']:.2f}/{v['p95_ms']:.2f}" for k, v in item["stages_in_pipeline"].items())
    return [f"### Pipeline, file mode ({item['engine']})", "",
            f"{item['input']} {item['size']}, {item['frames']} frames ({item['loops']} loops): pipeline "
            f"**{item['pipeline_fps']} frames/s** steady state (wall {item['pipeline_wall_fps']}), naive loop "
            f"{item['naive_fps']}; bound by **{item['bounding_stage']}** ({item['bounding_stage_fps']} frames/s "
            f"alone). {item['note']}", "",
            common.markdown_table(("stage alone", "frames/s", "p50 ms", "p95 ms", "in the pipeline"), stage_rows), "",
            f"In the pipeline (p50/p95 ms): {inside}", ""]


def _live_lines(item: dict[str, Any]) -> list[str]:
    return [f"### Live, simulated camera {item['camera']} ({item['engine']})", "",
            f"{item['seconds']} s: {item['shown']} of {item['camera_ticks']} camera frames shown (drop rate "
            f"{item['drop_rate']}); display latency p50/p95 {item['display_p50_ms']} / {item['display_p95_ms']} ms; "
            f"mask age p50/p95 {item['mask_age_p50_ms']} / {item['mask_age_p95_ms']} ms (target <= "
            f"{item['mask_age_target_ms']} ms); inference p50/p95 {item['inference_p50_ms']} / "
            f"{item['inference_p95_ms']} ms; drops per queue {item['drops']}; drift: {item['drift']}", ""]


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU benchmark ({report['machine']['tag']})", "", common.machine_line(report["machine"]), "",
             f"Budget {report['budget_s']} s, used {report.get('elapsed_s')} s; {report['seconds_per_config']} s per "
             f"configuration; frames: {report['frames']}; compile backend {report['compile_backend']}. Latency: "
             "CUDA-event medians of engine.infer on inputs prepared on the GPU (logits copied back); TFLOP/s from "
             f"FlopCounterMode FLOPs against {report['peak_tflops']} TFLOP/s; masks vs eager PyTorch FP32 on the "
             "CPU (model alone, and through engine.prepare).", "", "## Targets", ""]
    lines += [f"- {line}" for line in report.get("targets", [])]
    lines += ["", "## Latency", "", latency_table(report["rows"]), ""]
    for item in report["pipeline"]:
        lines += _pipeline_lines(item)
    for item in report["live"]:
        lines += _live_lines(item)
    lines += ["## Items", ""]
    lines += [f"- {i['item']}: {i['status']} {i.get('reason', '') or ''} {i.get('seconds', '')}".rstrip()
              for i in report["items"]]
    return "\n".join(lines)
