"""`kecae evaluate --run DIR`."""

from __future__ import annotations

import argparse

from kecae.configargs import add_dataclass_args, dataclass_from_args
from kecae.evaluation.evaluate import EvaluateConfig
from kecae.utils import KecaeError


def format_headline(m: dict) -> str:
    """The numbers a user looks at first, one per line, each beside its control."""
    def g(section: str, key: str, fmt: str = "{:.3f}") -> str:
        v = m.get(section, {}).get(key)
        return "n/a" if v is None else fmt.format(v)

    def pct(section: str, key: str) -> str:
        return g(section, key, "{:.1%}")

    met = [t.get("met") for t in m.get("targets", {}).values() if isinstance(t, dict)]
    return "\n".join([
        f"  judge ({m.get('judge', {}).get('arch')}) gives X' the grade it gives the donor: "
        f"KL-0->KL-2 {pct('exchange_success', 'judge_agreement_kl0_to_kl2')}, KL-2->KL-0 "
        f"{pct('exchange_success', 'judge_agreement_kl2_to_kl0')} (control "
        f"{pct('exchange_success', 'judge_agreement_control_kl0_to_kl2')} / "
        f"{pct('exchange_success', 'judge_agreement_control_kl2_to_kl0')})",
        f"  judge calls X' the donor's grade: {pct('exchange_success', 'judge_kl0_to_kl2_raw')} / "
        f"{pct('exchange_success', 'judge_kl2_to_kl0_raw')} (no-exchange control "
        f"{pct('exchange_success', 'judge_control_kl0_to_kl2')} / "
        f"{pct('exchange_success', 'judge_control_kl2_to_kl0')}); supervisor "
        f"{pct('exchange_success', 'supervisor_kl0_to_kl2_raw')} / "
        f"{pct('exchange_success', 'supervisor_kl2_to_kl0_raw')}",
        f"  plausible: X' {pct('plausibility', 'x_ex')}, real test images "
        f"{pct('plausibility', 'real_test')} (nominal {g('plausibility', 'quantile', '{:.0%}')})",
        f"  key transfer median {g('fidelity', 'key_transfer_median')} (KL-2->KL-0 "
        f"{g('fidelity', 'key_transfer_median_kl2_to_kl0')}; refused X' count as failures); "
        f"osteophytes on X'1 {pct('fidelity', 'osteophyte_rate_x1_ex')} vs real KL-2 "
        f"{pct('fidelity', 'osteophyte_rate_real_kl2')}; non-key SSIM "
        f"{g('fidelity', 'nonkey_ssim_median')}",
        f"  SVM accuracy on hK {g('separability', 'svm_hk_accuracy')}, on hN "
        f"{g('separability', 'svm_hn_accuracy')}",
        f"  reconstruction PSNR {g('quality', 'recon_psnr', '{:.2f}')} dB, SSIM "
        f"{g('quality', 'recon_ssim')}; judge test accuracy {g('judge', 'test_accuracy')}, "
        f"supervisor {g('supervisor', 'test_accuracy')}",
        f"  targets met: {sum(x is True for x in met)} of {len(met)}",
    ])


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kecae.evaluation.evaluate import evaluate

    cfg = dataclass_from_args(EvaluateConfig, args)
    if not cfg.run:
        raise KecaeError("--run DIR is required")
    m = evaluate(cfg)
    print(f"metrics written to {cfg.run}/metrics.json\n" + format_headline(m))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="measure a trained KECAE run (metrics.json)",
                       description="Separability of the latents, exchange success judged by an "
                       "independent classifier, ground-truth fidelity on phantoms, image quality.")
    add_dataclass_args(p, EvaluateConfig)
    p.set_defaults(func=cmd_evaluate)
