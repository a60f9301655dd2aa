// Sends e-mail through the operator's SMTP server (nodemailer: the maintained SMTP client
// for Node, STARTTLS and pooling included). Used for one-time sign-in codes only.
import nodemailer, { type Transporter } from 'nodemailer';
import type { Secret } from '../../core/secret.ts';

export interface Mailer {
  send(to: string, subject: string, text: string): Promise<void>;
  close(): void;
}

export function smtpMailer(url: Secret, from: string): Mailer {
  const transport: Transporter = nodemailer.createTransport(url.reveal(), { from });
  return {
    async send(to, subject, text) {
      await transport.sendMail({ to, subject, text });
    },
    close: () => transport.close(),
  };
}
