# One image for the API and the workers (`lms serve`, `lms worker`, `lms migrate`), in two variants:
#   docker build -t lms .                    the CPU image (target `cpu`, the default)
#   docker build --target gpu -t lms:gpu .   the same plus cuBLAS for CUDA 12, for GPU workers
# CTranslate2's wheel carries its CUDA kernels but loads cuBLAS (libcublas.so.12) at run time,
# which python:3.11-slim does not have: the gpu variant adds NVIDIA's cuBLAS wheel (the `gpu`
# dependency group in pyproject.toml, locked in uv.lock) and puts its folder on LD_LIBRARY_PATH,
# as faster-whisper's README says. The driver (libcuda.so.1) comes from the host through the
# NVIDIA container runtime (`docker run --gpus all`, the compose `gpu` profile, or the NVIDIA
# device plugin on Kubernetes), so the host needs the NVIDIA driver for CUDA 12.
# cuDNN is not carried: CTranslate2's wheels are built without it since 4.6.3 (the locked 4.8.5
# references libcublas.so.12 and no libcudnn), and it would add about 1 GB.

FROM python:3.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
COPY granian.toml ./
RUN uv sync --frozen --no-dev

FROM build AS build-gpu
RUN uv sync --frozen --no-dev --group gpu

FROM python:3.11-slim-bookworm AS runtime
RUN useradd --system --create-home --uid 10001 lms
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    LMS_DATA_DIR=/data \
    LMS_HOST=0.0.0.0 \
    LMS_GRANIAN_CONFIG=/app/granian.toml
RUN mkdir -p /data && chown lms /data
EXPOSE 8000

FROM runtime AS gpu
COPY --from=build-gpu /app /app
# The CUDA driver's cache of compiled kernels: CTranslate2 carries PTX, not machine code, for
# sm_90 (H100/H200), which the driver compiles on first use (10.6-16.6 s measured on H200s) and
# keeps here. Mount a volume on /cuda-cache (compose and the Kubernetes gpu overlay do) and only the
# first pod pays it. 4 GiB is the most the driver allows (its default, 256 MiB, can evict).
ENV LD_LIBRARY_PATH=/app/.venv/lib/python3.11/site-packages/nvidia/cublas/lib \
    LMS_WHISPER_DEVICE=cuda \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_CACHE_PATH=/cuda-cache \
    CUDA_CACHE_MAXSIZE=4294967296
# Owned by the worker's user, so that a named volume mounted there starts out writable by it.
RUN mkdir -p /cuda-cache && chown lms /cuda-cache
# Fails the build, rather than the first job, if the library is not where LD_LIBRARY_PATH says
# (loading it needs no GPU).
RUN python -c "import ctypes; ctypes.CDLL('libcublasLt.so.12'); ctypes.CDLL('libcublas.so.12')"
USER lms
CMD ["lms", "worker", "--device", "cuda", "--compute-type", "float16"]

# The default target (the last stage): the CPU image.
FROM runtime AS cpu
COPY --from=build /app /app
USER lms
CMD ["lms", "serve"]
