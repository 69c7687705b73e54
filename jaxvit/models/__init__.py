"""Model families; importing this package registers every model name."""

from jaxvit.models import vit  # noqa: F401
from jaxvit.models import swin  # noqa: F401
from jaxvit.models import mixer  # noqa: F401
from jaxvit.models import tnt  # noqa: F401
from jaxvit.models import inception_v4  # noqa: F401
from jaxvit.models import mvitv2  # noqa: F401
from jaxvit.models import perceiver  # noqa: F401
from jaxvit.models import dems  # noqa: F401
from jaxvit.models import msvit  # noqa: F401
