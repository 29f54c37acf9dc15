# A minimal Postfix that asks addrmunge resolver (the `resolver` service) about
# every recipient. Mail for valid munged addresses goes to the base address,
# which here is a local mailbox; adapt main.cf to your real delivery.
FROM debian:bookworm-slim
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Unpinned on purpose: a rebuild should pick up Debian's security updates.
# hadolint ignore=DL3008
RUN echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix \
    && rm -rf /var/lib/apt/lists/*
COPY postfix-main.cf /etc/postfix/main.cf
EXPOSE 25
CMD ["postfix", "start-fg"]
