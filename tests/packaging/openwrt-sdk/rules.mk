# Stand-in for the OpenWrt SDK's rules.mk (.ci/platforms): only what openwrt/Makefile uses, the
# install commands with the SDK's own definitions. Not a build system: it lets CI run the
# package's Build/Compile and install recipes for real.
INCLUDE_DIR:=$(TOPDIR)/include
BUILD_DIR?=$(TOPDIR)/build
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_DATA:=install -m0644
INSTALL_CONF:=install -m0600
CP:=cp -fpR
