"""Perceiver IO trained from scratch on Tiny-ImageNet (64px, 200 classes).

Source: shared/seeds/001_08ab12b5c0fdb041.txt, "Perceiver IO" / TinyImageNet (12.01%):
depth 2, 32 latents of dim 64, 1 cross head and 8 latent heads of dim 64, queries_dim =
logits_dim = 200, AdamW lr 3e-4, batch 128. perceiver_io_tiny with 64-dim heads and 200
queries; the rest as configs/perceiver_io_cifar10.py. The official download as unpacked:

  python main.py --config=configs/perceiver_io_tiny_imagenet.py --workdir=runs/pio_tin \
      --config.data_dir=/data/tiny-imagenet-200
Smoke test: --config.dataset=digits (tests/configs/test_configs.py)
"""

from configs import perceiver_io_cifar10
from configs.swin_small_data import small_data


def get_config():
    c = small_data(perceiver_io_cifar10.get_config(), "tiny_imagenet")
    c.aug.scale = (0.8, 1.0)
    c.model_args = "cross_dim_head=64,latent_dim_head=64,queries_dim=200"
    return c
