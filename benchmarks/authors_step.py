"""The authors' released training step beside ours, timed in one run on one device.

    python benchmarks/authors_step.py --out benchmarks/results [--device cpu|cuda] [--batch 2]

The released code's step, rebuilt from what is known about it (docs: DESIGN §3), not from its
text: the same two encoder branches as the paper (7 blocks of 3×3 stride-2 convolutions, 32 …
2048 channels); a decoder that widens to 4,096 channels, nine transposed convolutions 2048 →
4096 → 2048 → 1024 → … → 32 → 1 (4×4, the last 3×3; the widening layer upsamples 3 → 5 px, the
next, at stride 1, 5 → 6 px: a layout whose decoder has the released one's 313 M parameters);
each image encoded twice (once for its reconstruction, once for the exchange); a small Siamese
CNN with global average pooling trained jointly from scratch in train mode (dropout on,
batch-norm statistics moved by the generated images), on two 128 px patches cut at fixed offsets
of the 299 px image (one flipped) whose features are summed; images fed in [0, 1]; the LDA term
over the whole batch without ε; one Adam over the auto-encoder and the supervisor, which also
learns the real images' labels.

Ours is the ``paper`` preset as ``kecae train`` runs it (benchmarks/train_step.py). Both are timed
in fp32 and in bf16 autocast at the same batch on the same device, alternating, with the FLOPs of
one whole step of each counted (FlopCounterMode). Writes ``<out>/authors_step[_<device>].json``:
per precision the median step times, pairs/s, the ratio ours / theirs per pair, GFLOP per pair
of each, and each one's achieved TFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch import nn

from kecae.files import atomic_write_text
from kecae.losses import lda_term
from kecae.models.autoencoder import KECAEConfig, _encoder_branch
from kecae.models.classifiers import build_classifier
from kecae.models.cost import count_parameters
from mfu import step_flops
from train_step import TrainStep

#: The released decoder's channels: the paper's ladder with a 4,096-channel layer inserted.
DECODER_CHANNELS = (2048, 4096, 2048, 1024, 512, 256, 128, 64, 32, 1)
#: (kernel, stride, padding, output_padding) per layer, mapping 3 → 5 → 6 → 10 → 19 → 38 → 75
#: → 150 → 299 → 299 px; with 4×4 kernels on both 2048 ↔ 4096 layers the decoder has 313.2 M
#: parameters, the released decoder's count.
DECODER_LAYOUT = (
    (4, 2, 2, 1),
    (4, 1, 1, 0),
    (4, 2, 2, 0),
    (4, 2, 2, 1),
    (4, 2, 1, 0),
    (4, 2, 2, 1),
    (4, 2, 1, 0),
    (4, 2, 2, 1),
    (3, 1, 1, 0),
)
IMAGE = 299
PATCH = 128


def _decoder() -> nn.Sequential:
    layers: list[nn.Module] = []
    last = len(DECODER_LAYOUT) - 1
    for k, (kernel, stride, pad, out_pad) in enumerate(DECODER_LAYOUT):
        c_in, c_out = DECODER_CHANNELS[k], DECODER_CHANNELS[k + 1]
        layers.append(nn.ConvTranspose2d(c_in, c_out, kernel, stride, pad, out_pad, bias=k == last))
        layers += [nn.Tanh()] if k == last else [nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


class AuthorsModel(nn.Module):
    """The released auto-encoder's shape: the paper's encoders, the widened decoder."""

    def __init__(self) -> None:
        super().__init__()
        config = KECAEConfig(image_size=IMAGE)
        self.key_encoder = _encoder_branch(config)
        self.nonkey_encoder = _encoder_branch(config)
        self.decoder = _decoder()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.key_encoder(x), self.nonkey_encoder(x)  # (B, 2048, 3, 3) each

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = x1.shape[0]
        # reconstructions: each image encoded ...
        hk1, hn1 = self.encode(x1)
        hk2, hn2 = self.encode(x2)
        # ... and encoded again for the exchange
        gk1, gn1 = self.encode(x1)
        gk2, gn2 = self.encode(x2)
        h = torch.cat([hn1 + hk1, hn2 + hk2, gn1 + gk2, gn2 + gk1])  # (4B, 2048, 3, 3)
        out = self.decoder(h)  # (4B, 1, 299, 299)
        return out[:b], out[b : 2 * b], out[2 * b : 3 * b], out[3 * b :], hk1, hn1, hk2, hn2


class AuthorsStep:
    """One training step of the released code's kind on ``batch`` pairs."""

    def __init__(self, batch: int, device: str, bf16: bool, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.bf16 = bf16
        self.model = AuthorsModel().to(self.device).train()
        # the jointly trained Siamese-GAP supervisor on two fixed 128 px patches, summed
        self.supervisor = build_classifier(
            "siamese", IMAGE, patch_fraction=PATCH / IMAGE, combine="sum"
        ).to(self.device)
        self.supervisor.train()  # stays in train mode, as released
        gen = torch.Generator().manual_seed(seed)
        self.x1 = torch.rand(batch, 1, IMAGE, IMAGE, generator=gen).to(self.device)  # [0, 1]
        self.x2 = torch.rand(batch, 1, IMAGE, IMAGE, generator=gen).to(self.device)
        self.y1 = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.y2 = torch.ones_like(self.y1)
        params = [*self.model.parameters(), *self.supervisor.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-4)
        self.batch = batch

    def __call__(self) -> float:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x1_hat, x2_hat, x1_ex, x2_ex, hk1, hn1, hk2, hn2 = self.model(self.x1, self.x2)
            mse = F.mse_loss(x1_hat.float(), self.x1) + F.mse_loss(x2_hat.float(), self.x2)
            logits_ex = self.supervisor(torch.cat([x1_ex, x2_ex])).float()
            sup = F.cross_entropy(logits_ex, torch.cat([self.y2, self.y1]))
            logits_real = self.supervisor(torch.cat([self.x1, self.x2])).float()
            sup_real = F.cross_entropy(logits_real, torch.cat([self.y1, self.y2]))
            lda = 0.5 * (
                lda_term(hn1, hk1, eps=0.0, mode="batch")
                + lda_term(hn2, hk2, eps=0.0, mode="batch")
            )
            total = mse + 1e-2 * (sup + sup_real) + 1e-3 * lda
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        value = float(total.detach())
        self.optimizer.step()
        return value


def _time(steps: dict[str, Callable[[], float]], warmup: int, timed: int, sync: Callable) -> dict:
    """Median seconds per step of each step function, the functions taking turns."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(timed):
        for name, fn in steps.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(device: str, batch: int, warmup: int, timed: int) -> dict:
    """fp32 and bf16 rows: ours (paper preset) and the authors' step, alternating."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for bf16 in (False, True):
        ours = TrainStep("paper", batch, device=device, channels_last=True, bf16=bf16)
        theirs = AuthorsStep(batch, device, bf16)
        flops = {"ours": step_flops(ours), "authors": step_flops(theirs)}
        median = _time({"ours": ours, "authors": theirs}, warmup, timed, sync)
        row: dict = {"precision": "bf16-autocast" if bf16 else "fp32", "batch": batch}
        for name in ("ours", "authors"):
            gflop = flops[name] / batch / 1e9
            row[name] = {
                "step_s_median": round(median[name], 4),
                "pairs_per_s": round(batch / median[name], 3),
                "gflop_step_per_pair": round(gflop, 2),
                "tflop_per_s": round(batch / median[name] * gflop / 1e3, 4),
            }
        row["ours_faster_per_pair"] = round(median["authors"] / median["ours"], 2)
        row["flop_ratio_authors_over_ours"] = round(flops["authors"] / flops["ours"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del ours, theirs
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=2, help="pairs per step (CPU: 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("authors_step: --device cuda but no CUDA device here", file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    with torch.device("meta"):
        sizes = {
            "authors_params": count_parameters(AuthorsModel()),
            "authors_decoder_params": count_parameters(_decoder()),
        }
    started = time.time()
    result = measure(args.device, args.batch, args.warmup, args.steps)
    device_name = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor()
    )
    report = {
        "device": args.device,
        "device_name": device_name or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        **sizes,
        "design_facts": {"decoder_params": 313e6, "gflop_per_image": 26, "gflop_per_pair": 354},
        **result,
        "wall_s": round(time.time() - started, 1),
    }
    suffix = "" if args.device == "cpu" else "_" + args.device.split(":")[0]
    out = Path(args.out) / f"authors_step{suffix}.json"
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
