# nvidia-pytriton (untyped): the project only locates the wheel's bundled tritonserver through
# the package's __file__ (scripts/runtimes/triton/server.py), which every module has.
