# A static web server: replicas of Python's http.server, each on its own port. How many run
# comes from web.vars.hcl beside this file (or NOMAD_VAR_replicas in the service's
# environment); see docs/jobspec.md, "Variables, locals and functions".
variable "replicas" {
  type        = number
  description = "How many servers run."
  default     = 1

  validation {
    condition     = var.replicas >= 1 && var.replicas <= 4
    error_message = "Between 1 and 4 replicas, please."
  }
}

variable "team" {
  type    = string
  default = "docs"
}

locals {
  bind = "127.0.0.1"
  # ${NOMAD_PORT_http} is not an HCL variable: it stays as written until the task starts
  args = ["-m", "http.server", "${NOMAD_PORT_http}", "--bind", local.bind, "--directory", "/local"]
}

job "web" {
  type = "service"

  meta {
    team = var.team
  }

  group "site" {
    count = var.replicas

    network {
      port "http" {}
    }

    # Registered in reconciler's service registry while each replica runs (`reconciler
    # services web`); a new version is healthy once this check passes for min_healthy_time.
    service {
      name     = "web"
      port     = "http"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "server" {
      driver = "exec"

      config {
        command  = "/usr/bin/python3"
        args     = local.args
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
