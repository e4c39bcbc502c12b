// Prisma 7 reads the connection URL from here (the app itself connects through @prisma/adapter-pg).
module.exports = {
  schema: "prisma/schema.prisma",
  datasource: { url: process.env.DATABASE_URL ?? "postgresql://localhost/lms" },
};
