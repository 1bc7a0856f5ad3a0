"""Build script for clipapro and its compiled core ``clipapro._C``.

The extension depends on pybind11 only (not on libtorch): kernels take contiguous numpy buffers,
so it builds in seconds under pip's build isolation and survives torch upgrades.

Environment switches:
  CLIPAPRO_PORTABLE=1   do not tune for the build machine's CPU (no -march=native)
  CLIPAPRO_DEBUG=1      -O0 -g, assertions on
  CLIPAPRO_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer build (-fsanitize=address,undefined
                        -fno-omit-frame-pointer -O1 -g, compiled and linked with them). Python itself is not
                        instrumented: run it with LD_PRELOAD of libasan/libubsan, as scripts/fuzz_sanitized.sh does
  CLIPAPRO_CUDA=1       request a CUDA build (not available yet: GPU tensors run LP in torch and
                        GP through the CPU kernels; see README)
"""

import glob
import os
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

if os.environ.get("CLIPAPRO_CUDA", "0") == "1":
    sys.exit("CLIPAPRO_CUDA=1: clipapro has no CUDA kernels yet; build without it. CUDA tensors are "
             "accepted by every op (LP runs in torch on the GPU, GP copies through the CPU kernels).")

debug = os.environ.get("CLIPAPRO_DEBUG", "0") == "1"
sanitize = os.environ.get("CLIPAPRO_SANITIZE", "0") == "1"
portable = os.environ.get("CLIPAPRO_PORTABLE", "0") == "1"
sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
if sanitize:  # exact scratch buffers and annotated std::vector, so that overruns are seen (scratch.h)
    flags = sanitizers + ["-O1", "-g", "-DCLIPAPRO_SANITIZE", "-D_GLIBCXX_SANITIZE_VECTOR"]
elif debug:
    flags = ["-O0", "-g"]
else:
    flags = ["-O3", "-DNDEBUG", "-fno-math-errno"]
if not debug and not sanitize and not portable and sys.platform.startswith("linux"):
    flags.append("-march=native")

ext = Pybind11Extension(
    "clipapro._C",
    sorted(glob.glob("csrc/**/*.cpp", recursive=True)),
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=flags,
    extra_link_args=["-pthread"] + (sanitizers if sanitize else []),
)

setup(
    # prompts/ and scripts/ ship inside the wheel as clipapro._prompts and clipapro._scripts, so class
    # sets, templates and `clipapro bench` work from an installed package too
    packages=find_packages(include=["clipapro", "clipapro.*"]) + ["clipapro._prompts", "clipapro._scripts"],
    package_dir={"clipapro._prompts": "prompts", "clipapro._scripts": "scripts"},
    package_data={"clipapro._prompts": ["*.txt", "*.json", "*/*.txt", "*/*.json"],
                  "clipapro._scripts": ["*.py", "*.sh"]},
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
)
