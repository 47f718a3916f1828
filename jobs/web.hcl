# A static web server: two replicas of Python's http.server, each on its own port.
job "web" {
  type = "service"

  meta {
    team = "docs"
  }

  group "site" {
    count = 2

    network {
      port "http" {}
    }

    task "server" {
      driver = "exec"

      config {
        command  = "/usr/bin/python3"
        args     = ["-m", "http.server", "${NOMAD_PORT_http}", "--bind", "127.0.0.1", "--directory", "/local"]
        work_dir = "/local"
      }

      template {
        destination = "local/index.html"
        data        = <<EOT
<h1>replica {{ env "NOMAD_ALLOC_INDEX" }} of job {{ env "NOMAD_JOB_NAME" }}</h1>
EOT
      }

      resources {
        cpu    = 100
        memory = 64
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "5s"
    }
  }
}
