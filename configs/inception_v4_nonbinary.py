"""Inception-v4 non-binary transfer: several learning rates, L2-SP, new layers, step schedule.

Source: shared/seeds/003_e128073e719aedf8.txt (timm train.py fork): --model inception_v4
--pretrained --new-layers=1, -b 32, --epochs 800, --lr 0.03 (one lr, or three: --lr a b c
with --num-lowlrs=8), --weight-decay 0.0005, --decay-epochs 10, --decay-rate 0.9 (step
schedule), --mixup 0.2, --L2SP --L2SP_rates 0.1 (or three rates), --aa rand-m9-mstd0.5-inc1,
--reprob 0.5 --remode pixel, --amp. Everything else is timm train.py's default of the time:
sgd with momentum 0.9, warmup 3 epochs from 1e-4, smoothing 0.1, scheduler stepped per
epoch, Inception mean/std (0.5) at 299px, crop_pct 0.875, bicubic.
Datasets (the paper's) are read as distributed, from --config.data_dir (seed 003: --data_dir
./data/), by the splits seed 003's own loaders (timm/data/sdata/*.py in its repository, called with
test=False by its dataset_factory) train and evaluate on:
  caltech   files:caltech256, Caltech-256-30: per class images 1-30 train, 31-50 eval ('val');
            257 classes, 257.clutter included, as its loader lists every folder
  aircraft  files:aircraft, FGVC-Aircraft variants (100): images_variant_train.txt / _val.txt
  cars      files:cars, Stanford Cars: cars_train / cars_test (devkit annotations). Seed 003's
            loader instead reads car_ims + cars_annos.mat and keeps 10 train / 11 eval images per
            class of the official train set; jaxvit reads the official split
  dtd       files:dtd, DTD fold 1: labels/train1.txt / val1.txt
For test-set numbers pass --config.eval_split=test (caltech: every image after the 50th of its
class; aircraft and dtd then usually train on --config.train_split=train+val); --config.layout.*
sets Caltech's N per class, pick and clutter and DTD's fold. The tfds variants
cars_tfds (cars196 train / test) and dtd_tfds (dtd train / validation) read tfds's copies,
prepared with `tfds build NAME`; an image folder ROOT/train/<class>, ROOT/val/<class> works with
--config.dataset=imagefolder --config.data_dir=ROOT.

  python -c "import timm, torch; torch.save(timm.create_model('inception_v4.tf_in1k',
      pretrained=True).state_dict(), 'inception_v4.pth')"
  python -m convert --model inception_v4 --checkpoint inception_v4.pth --out runs/convert/inception_v4
  python main.py --config=configs/inception_v4_nonbinary.py:dtd --workdir=runs/inc_dtd
  # three learning rates (head, high, low) and three L2-SP rates:
  ... --config.lr='(0.03,0.03,0.003)' --config.num_lowlrs=8 --config.l2sp_rates='(0.1,0.001,0.0)'
Smoke test: --config.dataset=digits --config.init_from= (tests/configs/test_configs.py)
"""

from configs import default

DATASETS = {
    # dataset, data_dir, train split, eval split
    "caltech": ("files:caltech256", "data/caltech256", "train", "val"),
    "aircraft": ("files:aircraft", "data/aircraft", "train", "val"),
    "cars": ("files:cars", "data/stanford_cars", "train", "test"),
    "dtd": ("files:dtd", "data/dtd", "train", "val"),
    "cars_tfds": ("cars196", "", "train", "test"),
    "dtd_tfds": ("dtd", "", "train", "validation"),
}


def get_config(arg: str = "dtd"):
    if arg not in DATASETS:
        raise ValueError(f"configs/inception_v4_nonbinary.py:{arg}: choose one of {sorted(DATASETS)}")
    dataset, data_dir, train_split, eval_split = DATASETS[arg]
    c = default.get_config()
    c.dataset, c.data_dir = dataset, data_dir
    c.train_split, c.eval_split = train_split, eval_split
    c.img_size = 299
    c.patch_size = 0
    c.mean = (0.5, 0.5, 0.5)
    c.std = (0.5, 0.5, 0.5)
    c.crop_pct = 0.875
    c.aug.scale = (0.08, 1.0)
    c.aug.interpolation = "bicubic"
    c.aug.hflip = 0.5
    c.aug.auto_augment = "rand-m9-mstd0.5-inc1"
    c.aug.reprob = 0.5
    c.aug.remode = "pixel"
    c.model = "inception_v4"
    c.model_args = ""
    c.init_from = "runs/convert/inception_v4"
    c.new_layers = 1
    c.dtype = "bfloat16"
    c.global_batch_size = 32
    c.num_epochs = 800.0
    c.optimizer = "sgd"
    c.momentum = 0.9
    c.lr = 0.03
    c.num_lowlrs = 0  # with --config.lr=(a,b,c): 8 in the seed
    c.weight_decay = 5e-4  # replaced by L2-SP below
    c.l2sp = True
    c.l2sp_rates = 0.1
    c.label_smoothing = 0.1
    c.schedule = "step"
    c.schedule_unit = "epoch"
    c.decay_epochs = 10.0
    c.decay_rate = 0.9
    c.warmup_epochs = 3.0
    c.warmup_lr = 1e-4
    c.mixup_alpha = 0.2
    c.eval_every_epochs = c.ckpt_every_epochs = 1.0  # timm train.py: eval and checkpoint every epoch
    return c
