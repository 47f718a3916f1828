# A job file kept in git for every environment; its values come from web.vars.hcl beside it
# (written per environment) or from NOMAD_VAR_* in the service's environment.
variable "image_dir" {
  type        = string
  description = "Directory the server serves."
}

variable "port" {
  type    = number
  default = 8080
}

variable "replicas" {
  type    = number
  default = 1

  validation {
    condition     = var.replicas >= 1
    error_message = "At least one replica is needed."
  }
}

variable "extra_args" {
  type    = list(string)
  default = []
}

job "web" {
  group "web" {
    count = var.replicas

    network {
      port "http" {
        static = var.port
      }
    }

    task "server" {
      driver = "exec"

      config {
        command = "/usr/bin/python3"
        args    = concat(["-m", "http.server", "${NOMAD_PORT_http}", "--directory", var.image_dir], var.extra_args)
      }
    }
  }
}
