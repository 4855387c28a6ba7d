/* The chat page: files of web-dir served on GET and HEAD of any path that
 * is not the API, health or metrics, on the loop thread. */
#include "gateway/gateway_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

static const char *content_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"},  {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},    {".svg", "image/svg+xml"},
        {".png", "image/png"},                  {".ico", "image/x-icon"},
        {".json", "application/json"},          {".txt", "text/plain; charset=utf-8"},
        {".map", "application/json"},           {".webmanifest", "application/manifest+json"},
    };
    const char *dot = strrchr(path, '.');

    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (!strcasecmp(dot, types[i].ext))
                return types[i].type;
    return "application/octet-stream";
}

/* Whether decoded @p path (@p len bytes) may name a file of web-dir: one
 * leading '/', no NUL, no backslash, no empty, '.' or '..' segment, no
 * hidden file. */
static bool path_is_safe(const char *path, size_t len)
{
    if (strlen(path) != len || path[0] != '/' || strchr(path, '\\'))
        return false;
    for (const char *seg = path + 1; *seg; ) {
        const char *e = strchr(seg, '/');
        size_t n = e ? (size_t)(e - seg) : strlen(seg);
        if (n == 0 || seg[0] == '.')
            return false;
        seg += n + (e ? 1 : 0);
        if (e && *seg == '\0')
            return false;
    }
    return true;
}

void kchat__gw_static_handle(kchat_gateway *gw, struct evhttp_request *req, const char *raw,
                             double started)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char *path;
    size_t len = 0;
    char full[4096];
    struct stat st;
    struct evbuffer *b;
    int fd;

    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        kchat__gw_reply_error(gw, req, GW_ROUTE_static, 405, "METHOD_NOT_ALLOWED",
                              "Only GET here.", started);
        return;
    }
    if ((path = evhttp_uridecode(raw, 0, &len)) == NULL) {
        kchat__gw_reply_error(gw, req, GW_ROUTE_static, 400, "BAD_REQUEST", "Bad path.", started);
        return;
    }
    if (!path_is_safe(path, len)) {
        free(path);
        kchat__gw_reply_error(gw, req, GW_ROUTE_static, 404, "NOT_FOUND", "No such file.",
                              started);
        return;
    }
    snprintf(full, sizeof(full), "%s%s", gw->cfg->web_dir,
             strcmp(path, "/") ? path : "/index.html");
    free(path);
    fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        kchat__gw_reply_error(gw, req, GW_ROUTE_static, 404, "NOT_FOUND", "No such file.",
                              started);
        return;
    }
    if ((b = evbuffer_new()) == NULL || evbuffer_add_file(b, fd, 0, st.st_size) != 0) {
        if (b)
            evbuffer_free(b);
        else
            close(fd);
        kchat__gw_reply_error(gw, req, GW_ROUTE_static, 500, "INTERNAL", "Cannot read the file.",
                              started);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-cache");
    kchat__gw_reply(gw, req, GW_ROUTE_static, 200, content_type(full), b, started);
    evbuffer_free(b);
}
