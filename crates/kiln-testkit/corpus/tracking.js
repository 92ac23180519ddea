window.trackingLoaded = 'tracking-script-body';
