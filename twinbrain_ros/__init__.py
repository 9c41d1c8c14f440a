"""twinbrain_ros: the TwinBrainVLA vision-language-action model on ROS 2 robot arms.

Layers (imports only go downward):
    model/    pure torch + transformers (no ROS)
    runtime/  synchronizer, chunk executor, safety limiter, image conversion (pure numpy, no ROS)
    nodes/    thin rclpy adapters
    sim/, bench/, cli  tools
"""

__version__ = "0.1.0"


def _preload_interface_libraries() -> None:
    """A pip build keeps rosidl's C libraries for msg/ and srv/ beside the generated modules (see
    setup.py). rmw loads the typesupport library by bare name (dlopen), which only succeeds for a
    library on LD_LIBRARY_PATH or one already loaded: load them here. After `colcon build` they live
    in install/lib on LD_LIBRARY_PATH and nothing is found here."""
    import ctypes
    from pathlib import Path

    here = Path(__file__).parent
    # generator_c first: the typesupport libraries link against it (RUNPATH $ORIGIN finds it too).
    for lib in sorted(here.glob("lib*__rosidl_*.so"), key=lambda p: "generator_c" not in p.name):
        try:
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        except OSError:   # ROS libraries not loadable (model-only use): the msg types fail on first use instead
            return


_preload_interface_libraries()
