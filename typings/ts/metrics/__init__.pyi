"""TorchServe's metrics package (`ts.metrics`, untyped): the part handlers/adapters/ uses of the
backend worker's metrics cache (`context.metrics`)."""
