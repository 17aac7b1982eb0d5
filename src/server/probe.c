// probe.c - `frcnn serve --healthcheck URL`: a minimal HTTP/1.1 GET for Docker's
// HEALTHCHECK and Kubernetes exec probes, so the runtime image needs no curl.
// Only http://HOST[:PORT][/PATH]; exit status 0 when the answer's status is 200.
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int wait_fd(int fd, short ev, double deadline) {
    for (;;) {
        double left = deadline - mono();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return 0;
    }
}

int fr_server_probe(const char *url, double timeout_s) {
    char host[256], port[8] = "80", path[512] = "/";
    if (strncmp(url, "http://", 7) != 0) {
        fprintf(stderr, "frcnn serve --healthcheck: only http:// URLs: '%s'\n", url);
        return 1;
    }
    const char *p = url + 7, *hs = p, *he;
    if (*p == '[') { // [v6]
        hs = ++p;
        he = strchr(p, ']');
        if (!he) goto bad;
        p = he + 1;
    } else {
        he = p + strcspn(p, ":/");
        p = he;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof host) goto bad;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    if (*p == ':') {
        size_t n = strspn(p + 1, "0123456789");
        if (n < 1 || n > 5) goto bad;
        memcpy(port, p + 1, n);
        port[n] = '\0';
        p += 1 + n;
    }
    if (*p == '/') {
        if (strlen(p) >= sizeof path || strpbrk(p, " \r\n")) goto bad;
        snprintf(path, sizeof path, "%s", p);
    } else if (*p) {
        goto bad;
    }

    double deadline = mono() + timeout_s;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        fprintf(stderr, "frcnn serve --healthcheck: %s: %s\n", host, gai_strerror(gai));
        return 1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int ok = fd >= 0;
    if (ok && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        ok = errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline);
        int e = 0;
        socklen_t el = sizeof e;
        if (ok && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0 || e)) ok = 0;
    }
    freeaddrinfo(res);
    char req[900], resp[64];
    size_t got = 0;
    if (ok) {
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: frcnn-healthcheck\r\n"
                         "Connection: close\r\n\r\n",
                         path, host);
        size_t sent = 0;
        while (ok && sent < (size_t)n) {
            ssize_t w = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
            if (w > 0) sent += (size_t)w;
            else ok = (w < 0 && (errno == EAGAIN || errno == EINTR)) && wait_fd(fd, POLLOUT, deadline);
        }
        while (ok && got < 12) { // "HTTP/1.1 200"
            ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
            if (r > 0) got += (size_t)r;
            else if (r == 0) break;
            else ok = (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLIN, deadline);
        }
    }
    if (fd >= 0) close(fd);
    resp[got] = '\0';
    if (!ok || got < 12) {
        fprintf(stderr, "frcnn serve --healthcheck: no answer from %s\n", url);
        return 1;
    }
    if (strncmp(resp, "HTTP/1.", 7) != 0 || strncmp(resp + 8, " 200", 4) != 0) {
        fprintf(stderr, "frcnn serve --healthcheck: %s answered '%.12s'\n", url, resp);
        return 1;
    }
    return 0;
bad:
    fprintf(stderr, "frcnn serve --healthcheck: bad URL '%s' (http://HOST[:PORT][/PATH])\n", url);
    return 1;
}
