# syntax=docker/dockerfile:1
# Build: docker build -t voxgate .     Run: docker run -p 8080:8080 voxgate
# The wheels carry their native parts: PyAV brings FFmpeg, espeakng-loader brings
# libespeak-ng and its voice data, so the runtime image needs no system audio packages.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/voxgate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/voxgate/bin/pip install . \
 && /opt/voxgate/bin/python -c "import espeakng_loader, os; assert os.path.isdir(espeakng_loader.get_data_path())"

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin voxgate
COPY --from=build /opt/voxgate /opt/voxgate
ENV PATH=/opt/voxgate/bin:$PATH PYTHONUNBUFFERED=1
USER voxgate
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
ENTRYPOINT ["voxgate"]
# In a container the gateway listens on all interfaces, so the dev-token endpoint is off
# unless VOXGATE_DEV_TOKENS=on (for a local try-out only).
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
