"""`kecae evaluate --run DIR`."""

from __future__ import annotations

import argparse

from kecae.configargs import add_dataclass_args, dataclass_from_args
from kecae.evaluation.evaluate import EvaluateConfig
from kecae.utils import KecaeError


def format_headline(m: dict) -> str:
    """The numbers a user looks at first, one per line."""
    def g(section: str, key: str, fmt: str = "{:.3f}") -> str:
        v = m.get(section, {}).get(key)
        return "n/a" if v is None else fmt.format(v)

    return "\n".join([
        f"  exchange success (judge {m.get('judge', {}).get('arch')}): KL-0->KL-2 "
        f"{g('exchange_success', 'judge_kl0_to_kl2')}  KL-2->KL-0 {g('exchange_success', 'judge_kl2_to_kl0')}"
        f"  (label only: {g('exchange_success', 'judge_kl0_to_kl2_raw')} / "
        f"{g('exchange_success', 'judge_kl2_to_kl0_raw')})",
        f"  exchange success (supervisor):  KL-0->KL-2 {g('exchange_success', 'supervisor_kl0_to_kl2')}"
        f"  KL-2->KL-0 {g('exchange_success', 'supervisor_kl2_to_kl0')}",
        f"  judge test accuracy {g('judge', 'test_accuracy')}; supervisor {g('supervisor', 'test_accuracy')}",
        f"  key transfer ratio median {g('fidelity', 'key_transfer_median')} (KL-2->KL-0 "
        f"{g('fidelity', 'key_transfer_median_kl2_to_kl0')}); non-key SSIM {g('fidelity', 'nonkey_ssim_median')}",
        f"  SVM accuracy on hK {g('separability', 'svm_hk_accuracy')}, on hN {g('separability', 'svm_hn_accuracy')}",
        f"  reconstruction PSNR {g('quality', 'recon_psnr', '{:.2f}')} dB, SSIM {g('quality', 'recon_ssim')}; "
        f"Frechet {g('quality', 'frechet', '{:.2f}')} (real-vs-real floor {g('quality', 'frechet_real_floor', '{:.2f}')})",
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
