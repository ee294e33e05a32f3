# torch-model-archiver ships no types: the names scripts/runtimes/torchserve/ uses to build .mar
# archives in-process.
