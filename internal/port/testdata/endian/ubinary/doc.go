// Package ubinary is shaped like github.com/u-root/uio/ubinary (2021).
package ubinary
