job "p" {
  update { max_parallel = 1 }
  group "g" {
    count = 2
    restart { attempts = 1 }
    network { port "http" {} }
    service {
      name = "p"
      provider = "nomad"
      port = "http"
      tags = ["a"]
    }
    task "t" {
      driver = "exec"
      config { command = "/bin/sleep" }
      resources { memory = 64 }
      template {
        data = "x"
        destination = "local/x"
        change_mode = "signal"
        change_signal = "SIGHUP"
      }
    }
  }
}
