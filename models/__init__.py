"""The example models: nn.Module definitions and their training data, all from installed
packages."""
