# The model server image: `python -m serving` with only serving/ and its pins.
#   docker build --target serving -t promotion-studio-serving .
#   docker run -e MODEL_NAME=... -e MODEL_ALIAS=staging \
#       -e MLFLOW_TRACKING_URI=http://host:5000 -p 8000:8000 promotion-studio-serving
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS serving

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# python3, not python: Debian-based bases may only have python3 until the venv
# exists; everything after this line runs the venv's python.
RUN python3 -m venv /opt/venv
COPY serving/requirements.txt /tmp/serving-requirements.txt
RUN pip install -r /tmp/serving-requirements.txt \
    && rm /tmp/serving-requirements.txt

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin serving
WORKDIR /app
COPY serving/ /app/serving/
USER serving

# Listen on all interfaces inside the container; flags or -e override these.
ENV HOST=0.0.0.0 \
    PORT=8000
EXPOSE 8000
# /health stays open when LIT_SERVER_API_KEY is set, so the probe needs no key.
HEALTHCHECK --interval=10s --timeout=6s --start-period=90s --retries=3 \
    CMD ["python", "-m", "serving.healthcheck"]
ENTRYPOINT ["python", "-m", "serving"]

# The studio itself (Streamlit app, CLI and `mlflow server`), used by
# compose.yaml: the serving stage plus the full requirements.txt. It comes last
# because Docker's classic builder (the one the docker SDK drives) builds every
# stage before the target: `--target serving` then never builds this one.
#   docker build --target app -t promotion-studio-app .
FROM serving AS app
USER root
COPY requirements.txt /tmp/requirements.txt
# psycopg2 lets the tracking server use the PostgreSQL profile of compose.yaml.
RUN pip install -r /tmp/requirements.txt psycopg2-binary==2.9.13 \
    && rm /tmp/requirements.txt \
    && mkdir -p /data /mlflow \
    && chown serving /data /mlflow
WORKDIR /studio
COPY app.py ./
COPY .streamlit/ .streamlit/
COPY core/ core/
COPY pages/ pages/
USER serving
ENV STUDIO_HOME=/data
EXPOSE 8501
HEALTHCHECK --interval=15s --timeout=6s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=5)"]
ENTRYPOINT []
CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
