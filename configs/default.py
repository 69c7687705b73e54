"""Default config: a small ViT (ViT-Tiny's layout: depth 6, width 96, 3 heads) on scikit-learn's
digits (offline, no download): 97.8-98.3% top-1 over seeds 0-2 in about 95 s of training on a
2-core CPU (README, Measured).

Every other config imports this one and overrides what its recipe sets.
Run: python main.py --config=configs/default.py --workdir=runs/digits
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    # --- data ---------------------------------------------------------------------
    # 'digits' | 'imagefolder' | 'synthetic' | any tfds name ('cifar10', ...) | an official download
    # read as it unpacks (jaxvit/data/layouts.py): 'files:flowers102', 'files:pets', 'files:caltech256',
    # 'files:aircraft', 'files:cars', 'files:dtd', and as torchvision's CIFAR10 / CIFAR100 / STL10
    # download them: 'files:cifar10', 'files:cifar100', 'files:stl10' (data_dir: torchvision's root)
    c.dataset = "digits"
    c.data_dir = ""  # imagefolder or files:* root, or tfds data_dir ('' = tfds default)
    c.train_split = "train"  # any split expression as tfds writes it: 'train+val', 'train[:90%]'
    c.eval_split = "test"  # imagefolder: 'val'; e.g. 'train[90%:]' to hold out the end of train
    c.val_fraction = 0.1  # imagefolder without val/: held-out fraction per class
    c.layout = ml_collections.ConfigDict()  # options of the files:* layouts
    c.layout.train_per_class = 30  # files:caltech256: 'train' images per class (Caltech-256-30)
    c.layout.val_per_class = 20  # files:caltech256: the next images per class are 'val', the rest 'test'
    c.layout.pick = "numbered"  # files:caltech256: 'numbered' (by image number, seed 003) | 'seeded' (config.seed)
    c.layout.clutter = True  # files:caltech256: 257.clutter is a class (seed 003's 257 classes)
    c.layout.aircraft_level = "variant"  # files:aircraft: 'variant' (100) | 'family' (70) | 'manufacturer' (41)
    c.layout.dtd_fold = 1  # files:dtd: labels/{train,val,test}N.txt, N in 1..10
    c.layout.cifar100_labels = "fine"  # files:cifar100: 'fine' (100 classes) | 'coarse' (20 superclasses)
    c.layout.stl10_fold = -1  # files:stl10: 0..9 keeps that fold's 1,000 train images (fold_indices.txt)
    # imagefolder, files:*: undecodable files stop the run, listed; True: leave them out (logged)
    c.skip_bad_images = False
    c.num_classes = -1  # -1: from the dataset
    c.img_size = 16
    c.mean = (0.5, 0.5, 0.5)
    c.std = (0.5, 0.5, 0.5)
    c.crop_pct = 1.0  # eval: resize short side to img_size / crop_pct, center crop
    c.aug = ml_collections.ConfigDict()
    c.aug.random_resized_crop = True
    c.aug.scale = (0.85, 1.0)  # timm RandomResizedCrop scale
    c.aug.ratio = (3 / 4, 4 / 3)
    c.aug.interpolation = "bicubic"  # 'bilinear' | 'bicubic'
    c.aug.hflip = 0.0  # digits are not mirror-symmetric
    c.aug.vflip = 0.0
    c.aug.squish = False  # train: resize to img_size ignoring aspect, no random crop; eval: timm crop_mode='squish'
    c.aug.crop_padding = 0  # >0: torchvision RandomCrop(img_size, padding=N) after the resize/crop
    c.aug.rotation = 0.0  # >0: torchvision RandomRotation(N): angle uniform in [-N, N] degrees
    c.aug.affine_degrees = 0.0  # torchvision RandomAffine(degrees, translate=(t, t), scale, shear) ...
    c.aug.affine_translate = 0.0  # ... max shift as a fraction of the size
    c.aug.affine_scale = (1.0, 1.0)  # ... scale range
    c.aug.affine_shear = 0.0  # ... x-shear in [-N, N] degrees
    c.aug.affine_interpolation = "nearest"  # rotation/affine resample (torchvision's default); 'bilinear' | 'bicubic'
    c.aug.color_jitter = 0.0  # timm --color-jitter: brightness=contrast=saturation=N; off with auto_augment (timm)
    c.aug.auto_augment = ""  # timm --aa: 'rand-m9-mstd0.5-inc1' (RandAugment) | 'v0' | 'original' | 'v0r' | 'originalr'
    c.aug.aa_interpolation = ""  # auto-augment resample: '' = aug.interpolation, 'random' (timm's per-op choice), ...
    c.aug.pick_ops = ()  # seed-001 policy: per image pick_min..pick_max steps, each one op of e.g. ("hflip",
    c.aug.pick_min = 1  # "rotate") drawn with replacement; flips/equalize/autocontrast/sharpness then apply
    c.aug.pick_max = 4  # with torchvision's p=0.5 (jaxvit.data.autoaugment.PICK_PROB)
    c.aug.reprob = 0.0  # timm --reprob: RandomErasing probability (after normalization)
    c.aug.remode = "pixel"  # timm --remode: 'pixel' | 'rand' | 'const'
    c.aug.recount = 1  # timm --recount: up to N boxes per image
    c.repeated_aug = 0  # timm --aug-repeats / DeiT --repeated-aug: each example N times per epoch (RASampler); 0/1 off
    c.shuffle_buffer = 50_000
    c.cache_train = True
    c.cache_eval = True
    c.data_threads = 0  # tf.data's private thread pool and the maps' width; 0: TF's pool, maps one per core
    c.prefetch_to_device = 2  # batches transferred ahead of the step (0: transfer at the step)
    c.transfer_dtype = "float32"  # 'uint8': images cross to the device as 0..255 and are normalized there (4x less)

    # --- model --------------------------------------------------------------------
    c.model = "vit_tiny_patch16_224"
    c.patch_size = 4  # 0: the model's default
    # more constructor keywords: digits' size here (a config that sets its own model sets its own)
    c.model_args = "depth=6,embed_dim=96,num_heads=3"
    c.drop_rate = 0.0
    c.attn_drop_rate = 0.0
    c.drop_path_rate = 0.0
    c.dtype = "float32"  # compute dtype ('bfloat16' on GPU/TPU); params stay float32
    # 'auto' (cuDNN fused on GPU in bf16/fp16, head_major on CPU, else XLA) | 'xla' | 'cudnn' | 'xla_padded'
    # | 'head_major'
    c.attention = "auto"
    # 'block': recompute each block's activations in the backward (less memory, ~1/3 more compute);
    # 'elementwise': recompute only the norms' and activations' outputs that feed a Linear
    c.remat = "none"
    c.init_from = ""  # a jaxvit checkpoint dir (python -m convert output, a workdir, or a workdir's best/)
    c.init_from_ema = False  # take init_from's EMA weights (a workdir trained with model_ema, or its best/)
    c.init_from_strict = True  # False: load the tensors that match, list the rest and keep them at init

    # --- optimization -------------------------------------------------------------
    c.global_batch_size = 64
    c.grad_accum_steps = 1  # >1: the global batch in this many micro-batches, one update
    c.num_epochs = 30.0
    c.total_steps = 0  # >0 overrides num_epochs
    c.optimizer = "adamw"  # 'adamw' | 'adam' | 'sgd' | 'lamb' (timm's Lamb; timm's default eps there is 1e-6)
    c.lr = ml_collections.FieldReference(1e-3, field_type=object)  # or seed 003's (head, high, low)
    c.blr = 0.0  # seed 004 --blr: >0 sets lr = blr * global_batch_size / 256
    c.b1 = 0.9
    c.b2 = 0.999
    c.eps = 1e-8
    c.momentum = 0.9  # sgd
    c.nesterov = False
    c.weight_decay = 0.05
    c.filter_bias_and_bn = True  # no decay on biases, norms, pos_embed, tokens (timm's default)
    c.grad_clip_norm = 0.0  # 0: off
    c.label_smoothing = 0.1
    c.schedule = "cosine"  # 'cosine' | 'step' | 'multistep' | 'constant'
    c.schedule_unit = ""  # '': warmup, then decay over the rest; 'epoch' | 'step': timm's scheduler per epoch / update
    c.warmup_epochs = 3.0
    c.warmup_steps = 0  # >0 overrides warmup_epochs
    c.warmup_lr = 1e-6
    c.min_lr = 1e-5
    c.cooldown_epochs = 0.0  # timm --cooldown-epochs: after the cosine's num_epochs, N more at min_lr (runs N longer)
    c.decay_epochs = 30.0  # step schedule
    c.decay_steps = 0
    c.decay_rate = 0.1
    c.decay_milestones = (90, 180, 270)  # multistep schedule: epochs (timm's --decay-milestones)

    # --- param groups and transfer (jaxvit/train/optim.py) --------------------------
    c.layer_decay = 0.0  # timm --layer-decay: lr of layer i scaled by layer_decay**(num_layers-1-i); 0: off
    c.num_lowlrs = 0  # seed 003: with --config.lr='(head,high,low)' the first N layer groups take the low lr
    c.new_layers = 0  # seed 003 --new-layers: re-initialize the last N layer groups (head = 1) of init_from
    c.l2sp = False  # seed 003 --L2SP: rate*(w - w0) toward init_from (rate*w on new layers) instead of weight decay
    c.l2sp_rates = ml_collections.FieldReference(0.01, field_type=object)  # --L2SP_rates: one, or (head, high, low)

    # --- device-side regularization ---------------------------------------------------
    c.mixup_alpha = 0.0  # timm --mixup: mixup alpha, on if > 0
    c.cutmix_alpha = 0.0  # timm --cutmix: cutmix alpha, on if > 0
    c.cutmix_minmax = ()  # timm --cutmix-minmax: (min, max) box ratio, turns cutmix on (alpha 1)
    c.mixup_prob = 1.0  # timm --mixup-prob: probability of mixing a batch / pair / example
    c.switch_prob = 0.5  # timm --mixup-switch-prob: cutmix instead of mixup, when both are on
    c.mixup_mode = "batch"  # timm --mixup-mode: 'batch' | 'pair' | 'elem' (a lambda per batch / pair / example)
    c.correct_lam = True  # cutmix: lambda from the box area after clipping at the border (timm's default)
    c.model_ema = False  # timm --model-ema: EMA of params and batch_stats, evaluated as eval_ema_*
    c.model_ema_decay = 0.9998  # timm --model-ema-decay
    c.model_ema_warmup = False  # timm --model-ema-warmup: ModelEmaV3's decay warmup

    # --- parallelism, logging, checkpoints ----------------------------------------
    c.parallelism = "pjit"  # 'pjit' (jit over a Mesh) | 'pmap'
    # CPU only: 'auto' (XLA's choice: YNNPACK runs the matrix products) | 'xla' (XLA's own dot kernels;
    # faster for plain ViTs, slower for short-sequence attention; jaxvit/train/xla_cpu.py; pjit only)
    c.cpu_dots = "auto"
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # data-parallel axis size; -1: all devices not used by fsdp
    c.mesh.fsdp = 1  # >1: params and optimizer state split over this many devices (pjit only)
    c.log_every = 20
    c.eval_every = 200  # steps; 0: only at the end
    c.ckpt_every = 200  # steps; 0: only at the end
    c.eval_every_epochs = 0.0  # >0: every N epochs instead (timm/DeiT --eval-freq); overrides eval_every
    c.ckpt_every_epochs = 0.0  # >0: every N epochs instead (--ckpt_freq); overrides ckpt_every
    c.keep_checkpoints = 3
    # WORKDIR/best: best eval by 'top1' | 'ema_top1' | '' (off); 'auto': as timm, ema_top1 with EMA
    c.best_metric = "auto"
    c.progress_bar = True
    c.eval_only = False  # evaluate the workdir's latest checkpoint (or init_from) and exit
    return c
