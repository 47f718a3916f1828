# A template rendered before start and loaded as environment (env = true).
job "greeter" {
  group "main" {
    task "greet" {
      driver = "exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do echo \"$GREETING from $NOMAD_TASK_NAME\"; cat /local/motd.txt; sleep 30; done"]
      }

      template {
        destination = "secrets/greeting.env"
        env         = true
        data        = <<EOT
GREETING=hello
EOT
      }

      template {
        destination = "local/motd.txt"
        change_mode = "noop"
        data        = "running as task {{ env \"NOMAD_TASK_NAME\" }} in alloc {{ env \"NOMAD_ALLOC_NAME\" }}\n"
      }

      resources {
        memory = 32
      }
    }
  }
}
