# One image for the API and the GPU workers.
# The PyTorch runtime image brings Python 3.11, CUDA, cuDNN, torch and torchvision, so pip
# only adds this project and its pure-Python dependencies (torch>=2.4 is already satisfied).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SRU_HPO_DATA_DIR=/data \
    SRU_HPO_HOME=/var/lib/sru-hpo

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sru_hpo ./sru_hpo
COPY service ./service
COPY workers ./workers
COPY trials ./trials
COPY search_spaces ./search_spaces
RUN pip install . \
 && useradd --create-home --uid 1000 sru \
 && mkdir -p /data /var/lib/sru-hpo \
 && chown -R sru:sru /data /var/lib/sru-hpo

USER sru
EXPOSE 8000
# api: `sru-hpo serve` (the compose file sets SRU_HPO_HOST=0.0.0.0 inside the container);
# worker: `sru-hpo worker --device auto`.
CMD ["sru-hpo", "serve"]
