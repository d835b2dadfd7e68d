module joint.interop/gopeer

go 1.21

require github.com/neovim/go-client v1.2.1
