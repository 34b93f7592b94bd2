"""Train the PneumoniaMNIST chest X-ray classifier and export it to ONNX.

The appliance runs the exported model with onnxruntime only. The ONNX graph takes
``image``: float32 [N, 1, 28, 28] with grey values in [0, 1] (pixel / 255) and returns
``probability``: float32 [N], the probability of pneumonia. Normalisation, the ensemble of
seeds and the sigmoid all live inside the graph.

Protocol: the networks are trained on the TRAIN split only; the VAL split picks the
decision threshold (maximum balanced accuracy); the TEST split is evaluated once, from the
exported ONNX model, for reporting in ``metrics.json``.

Data: PneumoniaMNIST (MedMNIST v2, Yang et al., Scientific Data 2023), CC BY 4.0, derived
from Kermany et al. 2018 (Mendeley Data, doi:10.17632/rscbjbr9sj.2).

Usage (from the repository root)::

    python tools/train_pneumonia_cxr.py
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from aifi_app.algorithms.package import sha256_file

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path("../shared/data/pneumoniamnist/pneumoniamnist_28.npz")
DEFAULT_OUT = Path("resources/algorithms/pneumonia-cxr")
MODEL_VERSION = "1.0.0"
INPUT_NAME = "image"
OUTPUT_NAME = "probability"
OPSET = 17


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters shared by every ensemble member."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    width: int = 32
    dropout: float = 0.3
    max_rotation_deg: float = 10.0
    max_shift_px: float = 2.0
    scale_range: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.2


@dataclass
class Splits:
    """The three PneumoniaMNIST splits as float arrays in [0, 1] and int labels."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]


def load_splits(path: Path) -> Splits:
    """Load the npz file into [N, 1, 28, 28] float32 images in [0, 1] and int64 labels."""
    with np.load(path) as data:
        x = {
            s: (data[f"{s}_images"].astype(np.float32) / 255.0)[:, None, :, :]
            for s in ("train", "val", "test")
        }
        y = {s: data[f"{s}_labels"].reshape(-1).astype(np.int64) for s in ("train", "val", "test")}
    return Splits(x=x, y=y)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney U statistic, with average ranks for ties."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    u_stat = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_stat / (n_pos * n_neg))


def accuracy_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Accuracy when predicting pneumonia for ``score >= threshold``."""
    predictions = np.asarray(scores, dtype=np.float64) >= threshold
    return float(np.mean(predictions == np.asarray(labels).astype(bool)))


def balanced_accuracy_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """Mean of sensitivity and specificity at ``score >= threshold``."""
    labels = np.asarray(labels).astype(bool)
    predictions = np.asarray(scores, dtype=np.float64) >= threshold
    sensitivity = float(np.mean(predictions[labels]))
    specificity = float(np.mean(~predictions[~labels]))
    return (sensitivity + specificity) / 2.0


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising balanced accuracy (Youden's J) on the given (validation) split.

    Candidates are the midpoints between consecutive distinct scores; among equally good
    candidates the one closest to 0.5 wins, which keeps the choice stable.
    """
    unique = np.unique(np.asarray(scores, dtype=np.float64))
    candidates = np.concatenate([[0.0], (unique[:-1] + unique[1:]) / 2.0, [1.0]])
    best_threshold = 0.5
    best_key: tuple[float, float] | None = None
    for candidate in candidates:
        key = (round(balanced_accuracy_at(labels, scores, candidate), 12), -abs(candidate - 0.5))
        if best_key is None or key > best_key:
            best_key = key
            best_threshold = float(candidate)
    return best_threshold


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCnn(nn.Module):
    """A VGG-style CNN for 28x28 grey images; returns one logit per image."""

    def __init__(self, width: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_block(1, width),
            conv_block(width, width),
            nn.MaxPool2d(2),  # 14x14
            conv_block(width, 2 * width),
            conv_block(2 * width, 2 * width),
            nn.MaxPool2d(2),  # 7x7
            conv_block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised images [N, 1, 28, 28] to logits [N]."""
        return self.head(self.features(x)).squeeze(1)


class ExportedEnsemble(nn.Module):
    """What goes into the ONNX graph: normalise, run every member, average probabilities."""

    def __init__(self, members: list[SmallCnn], mean: float, std: float) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Map [N, 1, 28, 28] grey values in [0, 1] to pneumonia probabilities [N]."""
        x = (image - self.mean) / self.std
        probabilities = [torch.sigmoid(member(x)) for member in self.members]
        return torch.stack(probabilities, dim=0).mean(dim=0)


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random small rotation, scale and shift plus brightness/contrast jitter.

    No horizontal flips: a chest radiograph is not left-right symmetric (heart, aortic arch,
    gastric bubble), and a flipped film is not a plausible input.
    """
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=gen)

    angle = uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg) * math.pi / 180.0
    scale = uniform(1.0 - cfg.scale_range, 1.0 + cfg.scale_range)
    shift = cfg.max_shift_px * 2.0 / x.shape[-1]
    tx = uniform(-shift, shift)
    ty = uniform(-shift, shift)
    cos = torch.cos(angle) / scale
    sin = torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], dim=1), torch.stack([sin, cos, ty], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast).view(n, 1, 1, 1)
    brightness = uniform(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + brightness
    return out.clamp(0.0, 1.0)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Probabilities of a single member (given normalised images)."""
    model.eval()
    outputs = [torch.sigmoid(model(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat(outputs).numpy()


def train_member(
    splits: Splits, seed: int, cfg: TrainConfig, mean: float, std: float, log_prefix: str
) -> tuple[SmallCnn, float]:
    """Train one network on TRAIN and return it with its final VAL ROC AUC.

    The weights after the last (cosine-annealed) epoch are kept: the val ROC AUC saturates
    near 0.998 within a few epochs, so picking the "best" epoch on val would mostly pick noise.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SmallCnn(width=cfg.width, dropout=cfg.dropout)
    x_train = torch.from_numpy(splits.x["train"])
    y_train = torch.from_numpy(splits.y["train"]).float()
    x_val = (torch.from_numpy(splits.x["val"]) - mean) / std
    y_val = splits.y["val"]

    # Class balancing: weight each class so both contribute equally to the loss.
    n_pos = float(y_train.sum())
    n_neg = float(len(y_train) - n_pos)
    weight_pos = len(y_train) / (2.0 * n_pos)
    weight_neg = len(y_train) / (2.0 * n_neg)

    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = cfg.warmup_epochs * steps_per_epoch

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    val_auc = float("nan")
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total_loss = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            xb = (augment(x_train[idx], cfg, gen) - mean) / std
            yb = y_train[idx]
            target = yb * (1.0 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
            weights = torch.where(yb > 0.5, weight_pos, weight_neg)
            logits = model(xb)
            loss = F.binary_cross_entropy_with_logits(logits, target, weight=weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total_loss += loss.item() * len(idx)
        val_auc = roc_auc(y_val, predict(model, x_val))
        print(
            f"{log_prefix} epoch {epoch + 1:2d}/{cfg.epochs} "
            f"loss {total_loss / len(order):.4f} val_auc {val_auc:.4f}",
            flush=True,
        )
    model.eval()
    return model, val_auc


def export_onnx(model: ExportedEnsemble, path: Path) -> None:
    """Export with the legacy TorchScript-based exporter, dynamic batch axis, opset 17."""
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 1, 28, 28, dtype=torch.float32)
    with warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (project rule); silence its deprecation note.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def onnx_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    """Run the exported model with onnxruntime on [N, 1, 28, 28] float32 images in [0, 1]."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (output,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.astype(np.float32)})
    return np.asarray(output, dtype=np.float32).reshape(-1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="pneumoniamnist_28.npz")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="epochs per seed")
    parser.add_argument("--seed", type=int, default=0, help="base seed; members use seed+i")
    parser.add_argument("--members", type=int, default=3, help="ensemble size")
    return parser.parse_args(argv)


def resolve(path: Path) -> Path:
    """Relative paths are taken relative to the repository root."""
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def main(argv: list[str] | None = None) -> int:
    """Train, pick the threshold on val, export, re-evaluate from ONNX and write metrics."""
    args = parse_args(argv)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    np.random.seed(args.seed)
    data_path = resolve(args.data)
    out_dir = resolve(args.out_dir)
    cfg = TrainConfig(epochs=args.epochs)

    splits = load_splits(data_path)
    mean = float(splits.x["train"].mean())
    std = float(splits.x["train"].std())

    started = time.perf_counter()
    members: list[SmallCnn] = []
    member_val_auc: list[float] = []
    for i in range(args.members):
        seed = args.seed + i
        model, member_auc = train_member(splits, seed, cfg, mean, std, f"[seed {seed}]")
        members.append(model)
        member_val_auc.append(member_auc)
    training_seconds = time.perf_counter() - started

    ensemble = ExportedEnsemble(members, mean, std)
    model_path = out_dir / "model.onnx"
    export_onnx(ensemble, model_path)

    # Everything below is computed from the exported ONNX model, as the appliance runs it.
    probabilities = {s: onnx_probabilities(model_path, splits.x[s]) for s in ("val", "test")}
    with torch.no_grad():
        torch_val = ensemble(torch.from_numpy(splits.x["val"])).numpy()
    max_diff = float(np.max(np.abs(torch_val - probabilities["val"])))
    threshold = choose_threshold(splits.y["val"], probabilities["val"])

    metrics: dict[str, object] = {
        "model": "pneumonia-cxr",
        "version": MODEL_VERSION,
        "threshold": threshold,
        "threshold_rule": "maximum balanced accuracy on val; predict pneumonia if p >= threshold",
        "val": {
            "n": int(splits.y["val"].size),
            "n_pneumonia": int(splits.y["val"].sum()),
            "accuracy": accuracy_at(splits.y["val"], probabilities["val"], threshold),
            "balanced_accuracy": balanced_accuracy_at(
                splits.y["val"], probabilities["val"], threshold
            ),
            "roc_auc": roc_auc(splits.y["val"], probabilities["val"]),
        },
        "test": {
            "n": int(splits.y["test"].size),
            "n_pneumonia": int(splits.y["test"].sum()),
            "accuracy": accuracy_at(splits.y["test"], probabilities["test"], threshold),
            "balanced_accuracy": balanced_accuracy_at(
                splits.y["test"], probabilities["test"], threshold
            ),
            "roc_auc": roc_auc(splits.y["test"], probabilities["test"]),
        },
        "train": {"n": int(splits.y["train"].size), "n_pneumonia": int(splits.y["train"].sum())},
        "seed": args.seed,
        "members": args.members,
        "member_seeds": [args.seed + i for i in range(args.members)],
        "member_val_roc_auc": member_val_auc,
        "epochs": args.epochs,
        "training_seconds": round(training_seconds, 1),
        "torch_onnx_max_abs_diff_val": max_diff,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
        "opset": OPSET,
        "model_sha256": sha256_file(model_path),
        "model_bytes": model_path.stat().st_size,
        "data_file": data_path.name,
        "data_sha256": sha256_file(data_path),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
