# A task that fails now and then: the restart policy brings it back, then gives up.
job "flaky" {
  group "worker" {
    restart {
      attempts = 3
      interval = "10m"
      delay    = "2s"
      mode     = "fail"
    }

    task "work" {
      driver = "exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo working; sleep 60; exit 1"]
      }

      resources {
        memory = 32
      }
    }
  }
}
