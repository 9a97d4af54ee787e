{
  "targets": [
    {
      "target_name": "sock_diag",
      "sources": ["native/sock_diag.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    },
    {
      "target_name": "sd_notify",
      "sources": ["native/sd_notify.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    }
  ]
}
