"""The network, its training (from scratch, continued from saved weights, or data-parallel) and prediction.

Incremental learning: a model file keeps the weights, the optimiser's state and how many epochs it
has seen, so a training started from it goes on where it stopped, and its MLflow steps continue
the numbering of the run it came from.

Data-parallel learning: when ``WORLD_SIZE`` > 1 (``torchrun``, or a platform training with
``workers``), every process joins one ``torch.distributed`` group (``env://``: ``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``), trains on its own shard of the data and ``DistributedDataParallel``
averages the gradients. The backend is ``gloo`` on CPU and ``nccl`` when each process has a GPU.
Each rank logs its own loss (``loss_rank<k>``); rank 0 logs the averaged loss, the validation
accuracy, and writes the model.
"""

from __future__ import annotations

import io
import json
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ai4lab_torch_digits import NAME, data


class Net(nn.Module):
    """64 pixels -> hidden units -> 10 classes."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.hidden = hidden
        self.layers = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def model_dir() -> Path:
    """``$AI4LAB_MODEL_DIR/ai4lab-torch-digits`` (the platform's), else ``~/.cache/ai4lab/models/...``."""
    root = os.environ.get("AI4LAB_MODEL_DIR") or Path.home() / ".cache" / "ai4lab" / "models"
    return Path(root).expanduser() / NAME


def save(path: Path, net: Net, optimiser: torch.optim.Optimizer, epochs_done: int, run_id: str | None) -> Path:
    """Weights, optimiser state and the epochs seen: what continuing needs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "hidden": net.hidden,
            "state_dict": net.state_dict(),
            "optimiser": optimiser.state_dict(),
            "epochs_done": epochs_done,
            "mlflow_run_id": run_id,
        },
        path,
    )
    return path


def load(path: Path | str) -> dict[str, Any]:
    """A saved model file (``ValueError`` when it is not one)."""
    try:
        saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {path}") from None
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file
        raise ValueError(f"{path} is not a model file of {NAME}: {e}") from None
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise ValueError(f"{path} is not a model file of {NAME}")
    return saved


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _mlflow() -> Any | None:
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow


def train(
    *,
    dataset: Path | str | None,
    output_dir: Path,
    epochs: int = 10,
    learning_rate: float = 0.01,
    batch_size: int = 64,
    hidden_units: int = 64,
    init_weights: Path | str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Train (or continue training) and return a summary; see the module docstring for the distributed case."""
    with torch.enable_grad():
        return _train(dataset, output_dir, epochs, learning_rate, batch_size, hidden_units, init_weights, val_fraction, seed)


def _train(
    dataset: Path | str | None,
    output_dir: Path,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    hidden_units: int,
    init_weights: Path | str | None,
    val_fraction: float,
    seed: int,
) -> dict[str, Any]:
    rank, world = _world()
    distributed = world > 1
    if distributed and not dist.is_initialized():
        # nccl needs one GPU per process; gloo runs on CPU (and is what this machine has)
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    x, y = data.read_csv(dataset)
    x_tr, y_tr, x_val, y_val = data.split(x, y, val_fraction, seed)
    x_tr, y_tr = x_tr[rank::world], y_tr[rank::world]  # this rank's shard

    saved = load(init_weights) if init_weights else None
    net = Net(int(saved["hidden"]) if saved else hidden_units).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
    start = 0
    if saved:
        net.load_state_dict(saved["state_dict"])
        optimiser.load_state_dict(saved["optimiser"])
        for group in optimiser.param_groups:
            group["lr"] = learning_rate
        start = int(saved.get("epochs_done", 0))
    model: nn.Module = nn.parallel.DistributedDataParallel(net) if distributed else net
    loss_fn = nn.CrossEntropyLoss()

    mlflow = _mlflow()
    started = time.time()
    history: list[dict[str, float]] = []
    with mlflow.start_run() if mlflow else nullcontext() as run:
        run_id = run.info.run_id if run is not None else None
        if mlflow and rank == 0:
            mlflow.log_params(
                {
                    "epochs": epochs,
                    "learning_rate": learning_rate,
                    "batch_size": batch_size,
                    "hidden_units": net.hidden,
                    "workers": world,
                    "start_epoch": start,
                    "init_weights": str(init_weights or ""),
                    "backend": dist.get_backend() if distributed else "none",
                }
            )
            if saved and saved.get("mlflow_run_id"):
                mlflow.set_tag("ai4lab.continues_run", saved["mlflow_run_id"])
        for epoch in range(start + 1, start + epochs + 1):
            model.train()
            order = torch.randperm(len(y_tr), generator=torch.Generator().manual_seed(seed + epoch))
            total, count = 0.0, 0
            for i in range(0, len(order), batch_size):
                batch = order[i : i + batch_size]
                optimiser.zero_grad()
                loss = loss_fn(model(x_tr[batch].to(device)), y_tr[batch].to(device))
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch)
                count += len(batch)
            local_loss = total / max(count, 1)
            sums = torch.tensor([total, float(count)])
            if distributed:
                dist.all_reduce(sums)  # the mean over every rank's examples
            row = {"loss": float(sums[0] / sums[1]), f"loss_rank{rank}": local_loss}
            if rank == 0:
                net.eval()
                with torch.no_grad():
                    row["val_accuracy"] = float((net(x_val.to(device)).argmax(1).cpu() == y_val).float().mean())
            history.append(row)
            if mlflow:
                mine = row if rank == 0 else {f"loss_rank{rank}": local_loss}
                mlflow.log_metrics(mine, step=epoch)
            print(f"rank {rank} epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items()), flush=True)
        summary: dict[str, Any] = {"rank": rank, "workers": world, "start_epoch": start, "epochs_done": start + epochs}
        if rank == 0:
            out = Path(output_dir)
            model_path = save(out / "model.pt", net, optimiser, start + epochs, run_id)
            final = history[-1]
            summary |= {
                "accuracy": final["val_accuracy"],
                "loss": final["loss"],
                "n_train": len(y) - len(y_val),
                "n_val": len(y_val),
                "model_path": str(model_path),
                "metrics_path": str(out / "metrics.json"),
                "mlflow_run_id": run_id,
                "duration_s": round(time.time() - started, 3),
            }
            (out / "metrics.json").write_text(json.dumps({"history": history, "final": summary}, indent=2))
            if mlflow:
                mlflow.log_metric("final_val_accuracy", final["val_accuracy"])
                mlflow.log_artifact(str(model_path))
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return summary


_CACHE: dict[str, Net] = {}


def pretrained() -> Path:
    """The bundled model, trained on first use from the bundled digits (about a second)."""
    path = model_dir() / "pretrained" / f"model-torch{torch.__version__.split('+')[0]}.pt"
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        train(dataset=None, output_dir=tmp, epochs=30, seed=0)
        os.replace(tmp / "model.pt", path)
    return path


def get_net(weights: Path | str | None) -> Net:
    key = str(weights or pretrained())
    if key not in _CACHE:
        saved = load(key)
        net = Net(int(saved["hidden"]))
        net.load_state_dict(saved["state_dict"])
        _CACHE[key] = net.eval()
    return _CACHE[key]


def image_to_features(image: bytes | Path | str) -> torch.Tensor:
    """Any image of one digit -> the 64 features of the 8x8 digits (ink light on dark, scaled 0..1)."""
    from PIL import Image, ImageOps

    try:
        src = io.BytesIO(image) if isinstance(image, bytes) else image
        img = ImageOps.grayscale(Image.open(src))
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds
        raise ValueError(f"not an image: {e}") from None
    if _pixels(img).mean() > 127:  # dark ink on light paper: make the ink the bright part, as in the digits
        img = ImageOps.invert(img)
    box = img.getbbox() or (0, 0, img.width, img.height)
    img = img.crop(box)
    side = max(img.size)
    square = Image.new("L", (side, side))
    square.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    small = square.resize((8, 8), Image.Resampling.BOX)
    return _pixels(small).reshape(1, 64) / 255.0


def _pixels(img: Any) -> torch.Tensor:
    """A grayscale PIL image's pixels as floats."""
    return torch.tensor(bytearray(img.tobytes()), dtype=torch.float32)


def predict(features: torch.Tensor, weights: Path | str | None = None) -> dict[str, Any]:
    net = get_net(weights)  # outside no_grad: the first use trains the pretrained model
    with torch.no_grad():
        probs = torch.softmax(net(features), dim=1)[0]
    return {
        "label": int(probs.argmax()),
        "probabilities": {str(i): round(float(p), 4) for i, p in enumerate(probs)},
        "weights": str(weights) if weights else "pretrained",
    }
