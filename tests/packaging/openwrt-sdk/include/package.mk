# Stand-in for the OpenWrt SDK's include/package.mk (.ci/platforms). BuildPackage gives:
#   make compile                  Build/Prepare and Build/Compile into PKG_BUILD_DIR
#   make install DESTDIR=DIR      Package/<name>/install into DIR, and DIR.postinst and
#                                 DIR.conffiles with the package's scripts as the SDK writes them
PKG_BUILD_DIR?=$(BUILD_DIR)/$(PKG_NAME)-$(PKG_VERSION)

define BuildPackage
.PHONY: compile install
compile:
	$$(Build/Prepare)
	$$(Build/Compile)
install: compile
	$$(call Package/$(1)/install,$$(DESTDIR))
	$$(file >$$(DESTDIR).postinst,$$(Package/$(1)/postinst))
	$$(file >$$(DESTDIR).conffiles,$$(Package/$(1)/conffiles))
endef
