from payhook_webhook.app import create_app; app = create_app()
