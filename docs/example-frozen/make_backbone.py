"""Make the frozen-feature example's backbone and pool from the CIFAR-10 slice.

    python docs/example-frozen/make_backbone.py --out /tmp/frozen-example

No pretrained weights can be downloaded where this example was made, so the backbone is trained here: the small
`cnn` of this repository, on 2,000 training images (the first 200 of each class; the file is sorted by class, so
its first 2,000 images would be two classes only), never on a test image. It writes, into --out:

- backbone.pt: the cnn's state dict, the format --weights reads;
- cifar10-pool-8k.npz: the other 8,000 training images (the backbone's images are left out of the pool) and the
  unchanged test split, for `--dataset npz:...`.

Fixed seeds (initialisation, batch order, augmentation: derive_seed(0, "example-backbone", ...)); a few minutes on
two CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.core.config import preset_protocol  # noqa: E402
from bench.core.seeding import derive_seed, torch_generator  # noqa: E402
from bench.data.images import from_arrays  # noqa: E402
from bench.models.backbones import create_model  # noqa: E402
from bench.training.trainer import DeviceData, Trainer  # noqa: E402

SLICE = Path("/work/shared/data/cifar10-jpeg-10k.npz")
PER_CLASS = 200  # backbone training images per class: 2,000 in all
EPOCHS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SLICE, help="the CIFAR-10 slice (npz)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/frozen-example"), help="where to write")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with np.load(args.data, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    y = arrays["y_train"]
    backbone_idx = np.concatenate([np.flatnonzero(y == c)[:PER_CLASS] for c in np.unique(y)])  # [2000]
    pool_mask = np.ones(y.size, dtype=bool)
    pool_mask[backbone_idx] = False

    # The backbone's training set only: the "test" split handed to the harness is the same images (never evaluated
    # on here; the harness's ImageData needs one), so no test image is seen.
    x = arrays["x_train"][backbone_idx].transpose(0, 3, 1, 2)  # [2000, 3, 32, 32]
    data = from_arrays("cifar10-backbone", x, y[backbone_idx], x, y[backbone_idx],
                       [str(c) for c in arrays["classes"]])
    device = torch.device("cpu")
    protocol = preset_protocol("quick", epochs=args.epochs, batch_size=64, lr=0.05, precision="fp32")
    trainer = Trainer(DeviceData.from_images(data, device, augment=True), protocol, device)
    model = create_model("cnn", 3, data.n_classes, derive_seed(0, "example-backbone", "init"))
    model = model.to(device, memory_format=torch.channels_last)
    start = time.perf_counter()
    fit = trainer.fit(model, torch.arange(x.shape[0]), torch_generator(0, "example-backbone", "train"))
    print(f"trained   cnn on {x.shape[0]} images, {args.epochs} epochs in {time.perf_counter() - start:.0f} s, "
          f"last-epoch loss {fit.final_loss:.3f}")

    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, args.out / "backbone.pt")
    np.savez(args.out / "cifar10-pool-8k.npz", x_train=arrays["x_train"][pool_mask], y_train=y[pool_mask],
             x_test=arrays["x_test"], y_test=arrays["y_test"], classes=arrays["classes"])
    print(f"wrote     {args.out / 'backbone.pt'} and {args.out / 'cifar10-pool-8k.npz'} "
          f"({int(pool_mask.sum())} pool images, {arrays['x_test'].shape[0]} test images)")


if __name__ == "__main__":
    main()
