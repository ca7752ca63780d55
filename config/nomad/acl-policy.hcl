# Nomad ACL policy of the token ai4lab uses (AI4LAB_NOMAD__TOKEN). Create it with
#   nomad acl policy apply -description "ai4lab platform" ai4lab config/nomad/acl-policy.hcl
#   nomad acl token create -name ai4lab -policy ai4lab
# ai4lab registers, reads, reads logs of and deregisters jobs in its namespace, and reads
# nodes for the capacity (free CPU, memory, GPUs per model) shown in the forms.
namespace "ai4lab" {
  capabilities = ["list-jobs", "read-job", "submit-job", "read-logs"]
}

node {
  policy = "read"
}
