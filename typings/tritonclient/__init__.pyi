"""tritonclient (NVIDIA's Triton client, untyped): the parts the project uses, typed for pyright.
A stub package shadows the real one, so every submodule imported anywhere has a stub here:
utils, http, grpc (with its generated model_config_pb2 and service_pb2)."""
