FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY schemas schemas
# streams/scenarios links to the public scenarios, which the package ships
COPY tests/scenarios tests/scenarios
RUN pip install --no-cache-dir .
CMD ["smi", "worker"]
