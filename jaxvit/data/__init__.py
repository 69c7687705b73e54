"""Input pipelines: host-side tf.data (sources, transforms) and device-side batch assembly."""
