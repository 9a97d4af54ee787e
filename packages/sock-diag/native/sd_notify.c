// systemd's service notification (sd_notify(3)): one datagram to the Unix socket named by $NOTIFY_SOCKET.
// Node has no Unix datagram sockets, so this is the one call it needs, through Node-API.
//
// Stateless: every call opens, sends on and closes its own socket. The send never blocks: a full queue on
// systemd's side is reported (EAGAIN) instead of stalling the event loop.

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SUN_PATH_BYTES sizeof(((struct sockaddr_un *)0)->sun_path)

static napi_value throw_error(napi_env env, const char *code, const char *message) {
  napi_throw_error(env, code, message);
  return NULL;
}

// notify(address: string, message: string) -> undefined
//   address: an absolute path, or "@name" for a name in the abstract namespace (as systemd writes it).
static napi_value js_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc != 2) return throw_error(env, "ERR_INVALID_ARG_COUNT", "notify(address, message) takes 2 arguments");
  napi_valuetype type;
  for (size_t i = 0; i < 2; i++) {
    if (napi_typeof(env, argv[i], &type) != napi_ok || type != napi_string) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "notify(address, message) takes two strings");
      return NULL;
    }
  }

  // One byte more than sun_path holds, so a name that does not fit is seen as too long, not cut.
  char address[SUN_PATH_BYTES + 2];
  size_t address_length = 0;
  if (napi_get_value_string_utf8(env, argv[0], address, sizeof address, &address_length) != napi_ok) return NULL;
  if (address_length < 2 || address_length > SUN_PATH_BYTES || (address[0] != '/' && address[0] != '@')) {
    return throw_error(env, "ERR_NOTIFY_SOCKET", "NOTIFY_SOCKET must be an absolute path or an abstract name (@name) that fits a Unix socket address");
  }
  struct sockaddr_un destination;
  memset(&destination, 0, sizeof destination);
  destination.sun_family = AF_UNIX;
  memcpy(destination.sun_path, address, address_length);
  bool abstract = address[0] == '@';
  if (abstract) destination.sun_path[0] = '\0';
  // An abstract name is exactly its bytes; a path may carry its terminating NUL when there is room.
  socklen_t destination_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + address_length + (!abstract && address_length < SUN_PATH_BYTES ? 1 : 0));

  size_t message_length = 0;
  if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &message_length) != napi_ok) return NULL;
  char *message = malloc(message_length + 1);
  if (message == NULL) return throw_error(env, "ENOMEM", "notify: out of memory");
  if (napi_get_value_string_utf8(env, argv[1], message, message_length + 1, &message_length) != napi_ok) {
    free(message);
    return NULL;
  }

  const char *what = NULL;
  int errnum = 0;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    what = "socket(AF_UNIX, SOCK_DGRAM)";
    errnum = errno;
  } else {
    ssize_t sent = sendto(fd, message, message_length, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&destination, destination_length);
    if (sent < 0) {
      what = "sendto(NOTIFY_SOCKET)";
      errnum = errno;
    } else if ((size_t)sent != message_length) {
      what = "sendto(NOTIFY_SOCKET) sent part of the message";
      errnum = EMSGSIZE;
    }
    close(fd);
  }
  free(message);
  if (what != NULL) {
    char text[256];
    snprintf(text, sizeof text, "%s: %s", what, strerror(errnum));
    return throw_error(env, "ERR_SD_NOTIFY", text);
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"notify", NULL, js_notify, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties) != napi_ok) return NULL;
  return exports;
}
