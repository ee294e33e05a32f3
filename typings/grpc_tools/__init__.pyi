# grpcio-tools ships no types: the names scripts/runtimes/torchserve/grpc_client.py uses.
