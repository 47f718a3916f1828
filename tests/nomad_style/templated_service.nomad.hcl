job "templated_service" {
  datacenters = ["dc1"]
  region      = "global"
  namespace   = "default"
  priority    = 50

  constraint {
    attribute = "${attr.os.name}"
    operator  = "is_set"
  }

  update {
    max_parallel     = 1
    min_healthy_time = "5s"
    healthy_deadline = "1m"
    auto_revert      = true
  }

  group "web" {
    count = 2

    ephemeral_disk {
      size = 150
    }

    network {
      port "http" {}
    }

    service {
      name     = "templated"
      port     = "http"
      provider = "nomad"
    }

    task "server" {
      driver = "exec"

      config {
        command = "/usr/bin/python3"
        args    = ["-m", "http.server", "${NOMAD_PORT_http}", "--directory", "${NOMAD_TASK_DIR}"]
      }

      template {
        data        = <<EOH
APP_MODE=production
ALLOC={{ env "NOMAD_ALLOC_INDEX" }}
EOH
        destination = "secrets/app.env"
        env         = true
      }

      template {
        data          = <<-EOT
          <html><body>served by {{ env "NOMAD_TASK_NAME" }}</body></html>
        EOT
        destination   = "local/index.html"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      resources {
        cpu    = 100
        memory = 64
      }

      kill_timeout = "10s"
    }
  }
}
