"""Model families; importing this package registers every model name."""

# each family registers its names on import
from jaxvit.models import dems, inception_v4, mixer, msvit, mvitv2, perceiver, swin, tnt, vit, vit_names  # noqa: F401
