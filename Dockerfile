# The `watershed` binary in a small image, for deploy/kubernetes/. Build with
# `docker build -t watershed:0.1.0 .` on a machine with a Docker engine (the
# test suite does not build it). Models are not baked in: the Deployment mounts
# them read-only at /models.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p watershed \
 && cp target/release/watershed /usr/local/bin/watershed

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin watershed
COPY --from=build /usr/local/bin/watershed /usr/local/bin/watershed
USER 10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/watershed"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
