"""Perceiver IO trained from scratch on STL-10 (96px).

Source: shared/seeds/001_08ab12b5c0fdb041.txt, "Perceiver IO" / STL-10 (test accuracy
47.48%): lucidrains' perceiver-pytorch PerceiverIO with depth 2, 96 latents of dim 192,
1 cross-attention head and 8 latent heads, both of dim 64, queries_dim = logits_dim = 10,
one learned query; AdamW, lr 3e-4, batch 128. That is the ``perceiver_io_small`` preset.
Dropout 0.2 as in configs/perceiver_io_cifar10.py (the seed's Perceiver recipe).

Differences from the seed, as in configs/perceiver_io_cifar10.py: pixels (+ Fourier
features) are the input tokens instead of one 96*96*3 token; 20 epochs (not stated in the
seed); crop + flip augmentation. 9216 pixel tokens per image: cross-attention is the cost.

Data: the seed read torchvision's download, datasets.STL10(root='data/stl10', split='train' /
'test', download=True): files:stl10 under data/stl10 (or stl10_binary/ itself; elsewhere
--config.data_dir=DIR). tfds instead: --config.dataset=stl10 --config.data_dir=

python main.py --config=configs/perceiver_io_stl10.py --workdir=runs/pio_stl10
Smoke test: add --config.dataset=digits --config.eval_split=test --config.num_epochs=1
"""

from configs import perceiver_io_cifar10


def get_config():
    c = perceiver_io_cifar10.get_config()
    c.dataset = "files:stl10"  # torchvision's download, as the seed read it
    c.data_dir = "data/stl10"
    c.eval_split = "test"
    c.img_size = 96
    c.mean = (0.4467, 0.4398, 0.4066)
    c.std = (0.2603, 0.2566, 0.2713)
    c.model = "perceiver_io_small"
    c.model_args = ""
    return c
