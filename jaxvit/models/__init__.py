"""Model families; importing this package registers every model name."""

from jaxvit.models import vit  # noqa: F401
