/* LD_PRELOAD for wrk/h2load: forget any TLS session before a handshake starts, so every
   new connection is a full handshake (wrk keeps the session across SSL_clear and resumes). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *s, SSL_SESSION *sess);
int SSL_in_before(const SSL *s);
int SSL_connect(SSL *s) {
    static int (*real)(SSL *) = NULL;
    if (!real) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    if (SSL_in_before(s)) SSL_set_session(s, NULL);
    return real(s);
}
