# One image for the API and the workers: `lms serve` or `lms worker`.
# The CPU build; the compose `gpu` profile runs the same image with the NVIDIA runtime, and
# CTranslate2's wheel carries its CUDA kernels (the host needs the NVIDIA driver and toolkit).
FROM python:3.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
COPY granian.toml ./
RUN uv sync --frozen --no-dev

FROM python:3.11-slim-bookworm
RUN useradd --system --create-home --uid 10001 lms
WORKDIR /app
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH \
    LMS_DATA_DIR=/data \
    LMS_HOST=0.0.0.0 \
    LMS_GRANIAN_CONFIG=/app/granian.toml
RUN mkdir -p /data && chown lms /data
USER lms
EXPOSE 8000
CMD ["lms", "serve"]
