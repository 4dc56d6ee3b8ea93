# baton in a container. Built by docker/build-image.sh, which first builds a statically
# linked baton on the host (this engine has no registry, so there is no builder image to
# pull) and then runs `docker build` on a context holding only that binary and this file.
# Usage and the `docker run` line: docs/docker.md ("baton in a container").
FROM scratch
COPY baton /baton
# Config (read-only) and state (a volume) live apart; see docs/docker.md.
VOLUME ["/var/lib/baton"]
WORKDIR /var/lib/baton
ENTRYPOINT ["/baton"]
CMD ["serve", "-c", "/etc/baton/baton.toml"]
